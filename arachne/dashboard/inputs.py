"""What a client sends that no handler should have to think about: text the store cannot
keep, JSON nested past reason, forms that do not parse.

PostgreSQL refuses NUL in text and a lone surrogate has no UTF-8 form, so either one in a
path, a query, a form or a JSON string would otherwise reach the store and end in a 500.
One middleware checks paths and queries for every route; ``loads`` and ``read_form`` do the
same for bodies; ``as_client_error`` is the last net for anything that still slips by.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDictProxy
from sqlalchemy.exc import DataError

log = logging.getLogger(__name__)

#: NUL and the other C0 controls but tab/newline/return, DEL, and lone surrogates.
UNSTORABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
#: Deepest JSON a request may nest (the API's own documents need 4).
MAX_DEPTH = 32

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def bad_text(value: str) -> bool:
    return UNSTORABLE.search(value) is not None


def refuse(where: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(
        text=f"{where} holds a control character or a lone surrogate, which Arachne does not keep"
    )


@web.middleware
async def clean_paths(request: web.Request, handler: Handler) -> web.StreamResponse:
    """400 for a path or query that carries what the store refuses, before any handler."""
    if bad_text(request.path):
        raise refuse("the path")
    for key, value in request.query.items():
        if bad_text(key) or bad_text(value):
            raise refuse(f"the query parameter {key[:40]!r}")
    return await handler(request)


def loads(raw: bytes | str) -> Any:
    """``json.loads`` for request bodies: ValueError (bad JSON, bad UTF-8, too deep, or text
    the store cannot keep) says which."""
    try:
        doc = json.loads(raw)
    except RecursionError:
        raise ValueError(f"the JSON nests deeper than {MAX_DEPTH} levels") from None
    _check(doc)
    return doc


def _check(doc: Any) -> None:
    # Iterative: a body nested just under the parser's limit must not overflow us either.
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if bad_text(value):
                raise ValueError("a string holds a control character or a lone surrogate")
        elif isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise ValueError(f"the JSON nests deeper than {MAX_DEPTH} levels")
            items = value.items() if isinstance(value, dict) else ((None, v) for v in value)
            for key, item in items:
                if key is not None:
                    stack.append((key, depth))
                stack.append((item, depth + 1))


async def parse_form(request: web.Request) -> MultiDictProxy[Any]:
    """The request's form (parsed once, then cached by aiohttp), or 400 for a body that
    does not parse."""
    try:
        return await request.post()
    except (ValueError, HttpProcessingError) as exc:  # bad multipart, UTF-8, %-encoding
        raise web.HTTPBadRequest(text=f"unreadable form: {exc}") from None


async def read_form(request: web.Request) -> MultiDictProxy[Any]:
    """``parse_form``, and 400 for text fields the store cannot keep (file fields are left
    to their handler)."""
    form = await parse_form(request)
    for key, value in form.items():
        if isinstance(value, str) and (bad_text(key) or bad_text(value)):
            raise refuse(f"the form field {key[:40]!r}")
    return form


def as_client_error(exc: Exception) -> web.HTTPException | None:
    """The 4xx for an error that bad input alone causes; None for a real fault."""
    if isinstance(exc, DataError):  # the database refused a value: the client sent it
        log.warning("refused by the store: %s", str(exc).splitlines()[0])
        return web.HTTPBadRequest(text="the store refused a value in this request")
    if isinstance(exc, UnicodeError):
        return web.HTTPBadRequest(text="the request holds text that is not valid UTF-8")
    if isinstance(exc, RecursionError):
        return web.HTTPBadRequest(text="the request nests too deeply")
    return None
