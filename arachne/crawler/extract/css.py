"""Image URLs in CSS: ``url()``, ``image-set()`` (with or without ``url()``) and ``@import``."""

from __future__ import annotations

import re

_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
# Fonts are not images: their url()s would only be fetched to be refused by the worker.
_FONT_FACE = re.compile(r"@font-face\s*\{[^}]*\}", re.IGNORECASE)
_IMPORT = re.compile(
    r"""@import\s+(?:url\(\s*(['"]?)(?P<u>.*?)\1\s*\)|(['"])(?P<s>.*?)\3)[^;]*;?""",
    re.IGNORECASE | re.DOTALL,
)
_URL = re.compile(r"""url\(\s*(['"]?)(.*?)\1\s*\)""", re.IGNORECASE | re.DOTALL)
_IMAGE_SET = re.compile(r"(?:-webkit-)?image-set\(", re.IGNORECASE)
_TYPE = re.compile(r"""type\(\s*(['"]).*?\1\s*\)""", re.IGNORECASE | re.DOTALL)
_STRING = re.compile(r"""(['"])(.*?)\1""", re.DOTALL)


def _clean(css: str) -> str:
    return _FONT_FACE.sub(" ", _COMMENT.sub(" ", css))


def css_imports(css: str) -> list[str]:
    """Stylesheets a stylesheet ``@import``s, in order."""
    out = []
    for m in _IMPORT.finditer(_COMMENT.sub(" ", css)):
        url = (m.group("u") or m.group("s") or "").strip()
        if url:
            out.append(url)
    return out


def _image_set_strings(css: str) -> list[str]:
    """Bare quoted URLs inside image-set(); the url() forms are found by _URL anyway."""
    found = []
    for m in _IMAGE_SET.finditer(css):
        depth, pos = 1, m.end()
        while pos < len(css) and depth:
            depth += {"(": 1, ")": -1}.get(css[pos], 0)
            pos += 1
        body = _TYPE.sub(" ", css[m.end() : pos - 1])
        body = _URL.sub(" ", body)
        found += [s.group(2).strip() for s in _STRING.finditer(body)]
    return found


def css_urls(css: str) -> list[str]:
    """Image URLs in a stylesheet or style attribute, in order, each once."""
    css = _IMPORT.sub(" ", _clean(css))
    urls = [m.group(2).strip() for m in _URL.finditer(css)]
    urls += _image_set_strings(css)
    return list(dict.fromkeys(u for u in urls if u))
