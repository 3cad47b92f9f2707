"""URL helpers shared by the extractors: srcset parsing, image paths, absolute URLs."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

from w3lib.url import safe_url_string

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".gif", ".webp", ".bmp", ".avif", ".tif", ".tiff", ".ico"}
)


def srcset_urls(srcset: str) -> list[str]:
    """Candidate URLs of a srcset ("a.jpg 1x, b.jpg 2x"); descriptors dropped."""
    # HTML's srcset parsing rules: a URL is a run of non-whitespace (it may contain commas),
    # trailing commas end it; otherwise its descriptors run to the next comma outside
    # parentheses ("a.jpg 1x,b.jpg 2x" is two candidates).
    urls = []
    pos, end = 0, len(srcset)
    while pos < end:
        while pos < end and (srcset[pos].isspace() or srcset[pos] == ","):
            pos += 1
        start = pos
        while pos < end and not srcset[pos].isspace():
            pos += 1
        url = srcset[start:pos]
        if url.endswith(","):
            url = url.rstrip(",")
        else:
            depth = 0
            while pos < end and not (srcset[pos] == "," and depth == 0):
                depth += {"(": 1, ")": -1 if depth else 0}.get(srcset[pos], 0)
                pos += 1
        if url:
            urls.append(url)
    return urls


def is_image_path(url: str) -> bool:
    try:
        path = urlsplit(url).path.lower()
    except ValueError:
        return False
    return any(path.endswith(ext) for ext in IMAGE_EXTENSIONS)


def is_data_uri(raw: str) -> bool:
    return raw.strip()[:5].lower() == "data:"


def absolute(base: str, raw: str) -> str | None:
    """``raw`` resolved against ``base``, made safe, fragment dropped; None if not http(s)."""
    raw = raw.strip()
    if not raw or raw.startswith("#") or is_data_uri(raw):
        return None
    try:
        url = _safe(urljoin(base, raw))
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises for a port out of range, as safe_url_string does
    except ValueError:  # "http://[bad", port out of range: skip this URL, not the page
        return None
    return url if parts.scheme in ("http", "https") else None


# URLs ``safe_url_string`` returns unchanged: lower-case http(s) host, a port if any, and a
# path of characters it never re-quotes (or valid escapes). Anything else takes its path.
_SAFE = re.compile(
    r"https?://[a-z0-9\-._]+(?::[1-9][0-9]{0,4})?"
    r"(?:/(?:[A-Za-z0-9\-._~:/?@!$&()*+,;=]|%[0-9A-Fa-f]{2})*)?"
)


def _safe(url: str) -> str:
    """``safe_url_string(url)`` without its fragment. Most links on a page are plain ASCII
    that it would return unchanged: those skip its parse and re-quote (5 µs a link, the
    crawler's largest single cost per page); a test checks both agree."""
    if "#" not in url and not url.endswith("?") and _SAFE.fullmatch(url):
        return url
    return safe_url_string(url).split("#", 1)[0]
