"""A benign demo website (served from memory on loopback) and `arachne demo` orchestration.

The site doubles as the end-to-end test fixture: it knows which image URLs must match the
known list it publishes, and how (see ``arachne.demo.site.SiteManifest``).
"""
