"""The Scrapy side: discovers pages and image URLs. It never downloads images."""
