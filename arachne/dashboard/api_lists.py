"""API routes of hash lists: summaries, import (upload), retract by id (see api.py)."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import BadHttpMessage
from redis.exceptions import RedisError

from arachne.dashboard.api import actor_of, call, only, read_body, strings
from arachne.dashboard.security import requires
from arachne.dashboard.views import LIVE, SETTINGS, STORE, json_response
from arachne.errors import ListFormatError
from arachne.matcher.lists import FORMATS, HASH_KINDS
from arachne.settings import Settings
from arachne.store.db import Store
from arachne.store.listversions import ListChangeRefused

MAX_IDS = 10_000
"""External ids one ``POST .../retract`` may name."""
LIST_UPLOAD_MAX = 512 * 1024 * 1024
"""Largest hash-list upload (a million PDQ lines is ~70 MB)."""


def setup(app: web.Application) -> None:
    add = app.router
    add.add_get("/api/lists", lists, name="api_lists")
    add.add_post("/api/lists/{name}/import", import_list, name="api_list_import")
    add.add_post("/api/lists/{name}/retract", retract, name="api_list_retract")


async def lists(request: web.Request) -> web.Response:
    """Every list with its counts by hash kind; never a hash value."""
    from arachne.store.hashlists import list_summaries

    return json_response({"lists": await call(request, list_summaries)})


def _list_name(request: web.Request) -> str:
    name = request.match_info["name"]
    if not name.strip() or len(name) > 200:
        raise web.HTTPBadRequest(text="a list name is 1 to 200 characters")
    return name


def _flag(request: web.Request, key: str, default: bool) -> bool:
    raw = request.query.get(key)
    if raw is None:
        return default
    if raw.lower() not in ("true", "false", "1", "0"):
        raise web.HTTPBadRequest(text=f"{key} must be true or false")
    return raw.lower() in ("true", "1")


def _import_options(request: web.Request) -> dict[str, Any]:
    q = request.query
    unknown = sorted(set(q) - {"format", "kind", "threshold", "category", "force", "rematch"})
    if unknown:
        raise web.HTTPBadRequest(text=f"unknown query parameter(s): {', '.join(unknown)}")
    fmt, kind = q.get("format"), q.get("kind")
    if fmt is not None and fmt not in FORMATS:
        raise web.HTTPBadRequest(text=f"format must be one of {', '.join(FORMATS)}")
    if kind is not None and kind not in HASH_KINDS:
        raise web.HTTPBadRequest(text=f"kind must be one of {', '.join(HASH_KINDS)}")
    threshold = None
    if "threshold" in q:
        raw = q["threshold"]
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 3 and int(raw) <= 128):
            raise web.HTTPBadRequest(text="threshold must be an integer from 0 to 128")
        threshold = int(raw)
    categories = q.getall("category", [])
    if any(not c.strip() or len(c) > 64 for c in categories):
        raise web.HTTPBadRequest(text="each category is 1 to 64 characters")
    return {
        "format": fmt,
        "kind": kind,
        "threshold": threshold,
        "categories": categories or None,
        "force": _flag(request, "force", False),
        "rematch": _flag(request, "rematch", True),
    }


@requires("operator")
async def import_list(request: web.Request) -> web.Response:
    """Like `arachne lists import`: the file as the raw body or a multipart ``file`` part."""
    name = _list_name(request)
    options = _import_options(request)
    if (request.content_length or 0) > LIST_UPLOAD_MAX:
        raise _too_large(request.content_length or 0)
    # A list is hashes, not image bytes: it may touch the disk, which the parser needs.
    fd, tmp = tempfile.mkstemp(prefix="arachne-list-", suffix=".upload")
    path = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as out:
            filename = await _receive(request, out)
        rematch = options.pop("rematch")
        settings, actor = request.app[SETTINGS], actor_of(request)
        data = await call(request, _import, settings, path, filename, name, options, actor)
    finally:
        path.unlink(missing_ok=True)
    data["rematch"] = None
    if rematch and (data["added"] or data["updated"]):
        data["rematch"] = await asyncio.to_thread(_queue_rematch, request, name, data["version"])
    return json_response(data)


def _too_large(size: int) -> web.HTTPRequestEntityTooLarge:
    return web.HTTPRequestEntityTooLarge(
        max_size=LIST_UPLOAD_MAX,
        actual_size=size,
        text=f"a list upload is at most {LIST_UPLOAD_MAX // 2**20} MiB",
    )


async def _receive(request: web.Request, out: Any) -> str:
    """Copy the upload to ``out`` in chunks; the name it had (for messages and history)."""
    if request.content_type != "multipart/form-data":
        await _copy(request.content.iter_chunked(1 << 16), out)
        return "(request body)"
    try:
        if request.content.at_eof():  # a session's CSRF check has parsed the form already
            field = (await request.post()).get("file")
            if isinstance(field, web.FileField):
                await _copy(_chunks(field.file), out)
                return field.filename or "(file)"
        else:
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if isinstance(part, BodyPartReader) and part.name == "file":
                    await _copy(_parts(part), out)
                    return part.filename or "(file)"
    except (ValueError, KeyError, TypeError, RuntimeError, BadHttpMessage) as exc:
        raise web.HTTPBadRequest(text=f"malformed multipart body ({exc})") from None
    raise web.HTTPBadRequest(text="send the list as the multipart field 'file'")


async def _copy(chunks: AsyncIterator[bytes], out: Any) -> None:
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > LIST_UPLOAD_MAX:
            raise _too_large(size)
        out.write(chunk)


async def _chunks(file: Any) -> AsyncIterator[bytes]:
    while chunk := file.read(1 << 16):
        yield chunk


async def _parts(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(1 << 16):
        yield chunk


def _import(
    store: Store,
    settings: Settings,
    path: Path,
    filename: str,
    name: str,
    o: dict[str, Any],
    actor: str,
) -> dict[str, Any]:
    from arachne.store.hashlists import import_list as do_import

    shown = filename[:200]
    try:
        r = do_import(store, name, path, source=f"API upload {shown}", actor=actor,
                      max_retract_share=settings.list_retract_max, **o)  # fmt: skip
    except ListFormatError as exc:  # name the operator's file, not our copy, and API options
        raise ListFormatError(shown, exc.line, _as_options(exc.message)) from None
    except ListChangeRefused as exc:
        raise ListChangeRefused(_as_options(str(exc).replace(str(path), shown))) from None
    return {
        "name": r.name,
        "version": r.version,
        "format": r.format,
        "added": r.added,
        "updated": r.updated,
        "retracted": r.retracted,
        "unchanged": r.unchanged,
        "active": r.by_kind,
        "skipped": r.skipped,
        "duplicates": r.duplicates,
        "conflicts": r.conflicts,
    }


def _as_options(message: str) -> str:
    """The CLI's option names in a message, as this API's query parameters."""
    for option in ("force", "format", "kind", "threshold", "category"):
        message = message.replace(f"--{option}", f"the {option} parameter")
    return message


def _queue_rematch(request: web.Request, name: str, version: int) -> str | None:
    """The task id of the rematch of the new entries, or None (nothing stored, or no Redis:
    `arachne rematch` does it later)."""
    from arachne.queue.rematch import Selection, enqueue_rematch, ranges_of

    store = request.app[STORE]
    if not ranges_of(store):
        return None
    redis = request.app[LIVE]._client()
    if redis is None:
        return None
    try:
        task, _jobs = enqueue_rematch(store, redis, request.app[SETTINGS], Selection(name, version))
    except (RedisError, OSError):
        return None
    return task


@requires("operator")
async def retract(request: web.Request) -> web.Response:
    """Like `arachne lists retract NAME --id ...`: those entries stop matching at once."""
    from arachne.store.listversions import retract_ids

    name = _list_name(request)
    body = await read_body(request)
    only(body, {"ids"})
    ids = strings(body, "ids", most=MAX_IDS, longest=200, least=1)
    try:
        r = await call(request, partial(retract_ids, actor=actor_of(request)), name, ids)
    except web.HTTPConflict as exc:  # none of the ids is in the list
        raise web.HTTPNotFound(text=exc.text) from None
    return json_response({"name": r.name, "version": r.version, "action": r.action, **r.counts})
