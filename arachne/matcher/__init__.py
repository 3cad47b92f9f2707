"""Hashing images, importing known-hash lists, and matching hashes against them."""
