"""Image URLs in JSON-LD (``<script type="application/ld+json">``)."""

from __future__ import annotations

import json
from typing import Any

# Properties whose value is an image: a URL, a list, or an ImageObject.
IMAGE_KEYS = frozenset(
    {"image", "thumbnailUrl", "thumbnail", "logo", "photo", "primaryImageOfPage"}
)
_IMAGE_OBJECT_URLS = ("contentUrl", "url", "thumbnailUrl")
MAX_NODES = 10_000  # a huge or hostile blob costs at most this many visits


def jsonld_images(text: str) -> list[str]:
    """Raw (unresolved) image URLs of one JSON-LD block; invalid JSON gives none."""
    try:
        data = json.loads(text)
    except ValueError:
        return []
    found: list[str] = []
    budget = [MAX_NODES]

    def visit(node: Any, is_image: bool) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            return
        if isinstance(node, str):
            if is_image:
                found.append(node)
        elif isinstance(node, list):
            for item in node:
                visit(item, is_image)
        elif isinstance(node, dict):
            kind = node.get("@type")
            kinds = kind if isinstance(kind, list) else [kind]
            if is_image or "ImageObject" in kinds:
                for key in _IMAGE_OBJECT_URLS:
                    if isinstance(node.get(key), str):
                        found.append(node[key])
            for key, value in node.items():
                if key in IMAGE_KEYS:
                    visit(value, True)
                elif isinstance(value, dict | list):
                    visit(value, False)

    visit(data, False)
    return found
