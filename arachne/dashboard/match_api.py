"""``POST /api/match``: platforms ask whether hashes, or an image, match the known lists.

A request carries up to ``MAX_QUERIES`` hashes as JSON, or one image (multipart field
``image``, or a raw ``image/*`` / ``application/octet-stream`` body). An image is read into
memory under the byte cap, hashed with the workers' own path (digests, PDQ of the 8
dihedral variants, the 2x upscaled and border-trimmed hashes) under the pixel cap, and
dropped: its bytes never reach a file, the store or a log. The answer says, per query,
whether it matched and how (kind, hash kind, distance, variant); list names and entry ids
only go to operators and admins, never to a viewer (a platform's token).

The index is the workers' (``WorkerContext``): its load starts in the background once the
app has been up ``LOAD_AFTER_STARTUP`` seconds, or with the first request if that comes
first (requests wait for the load under way); then it is checked for list changes at most
every ``REFRESH_EVERY`` seconds, in the background.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import BadHttpMessage
from aiohttp.streams import StreamReader
from sqlalchemy import select
from sqlalchemy.orm import Session

from arachne.dashboard.inputs import loads
from arachne.dashboard.security import IDENTITY, reads_only, requires
from arachne.dashboard.views import SETTINGS, STORE, json_response
from arachne.matcher.hashing import ImageHashes, hash_image_bytes
from arachne.matcher.kinds import KINDS
from arachne.matcher.match import MatchDecision
from arachne.queue.jobs import WorkerContext
from arachne.settings import Settings
from arachne.store.db import Store
from arachne.store.models import HashEntry, HashList

log = logging.getLogger(__name__)

MAX_QUERIES = 1_000
"""Hashes per request: a batch this size is one index query (~0.1 s at 1M hashes)."""
MAX_JSON_BYTES = 1 << 20
"""JSON bodies are read up to this (1,000 queries need ~100 KB), whatever the app allows."""
REFRESH_EVERY = 5.0
"""Seconds between checks for list imports (one small query each)."""
LOAD_AFTER_STARTUP: float | None = 1.0
"""Seconds after startup before the index starts loading in the background (None: only on
the first request). Not at once: an app that stops sooner (a test) never loads it."""
UPLOADS_AT_ONCE = 4
"""Images read and hashed at a time; more wait. Each may hold up to the byte cap in memory
(``fetch_max_bytes``) plus its decoded pixels, so this bounds what uploads can take."""
_CHUNK = 64 * 1024
_MULTIPART_SLACK = 64 * 1024  # boundaries and part headers around a capped image
_ID_CHUNK = 500
_QUERY_FIELDS = {"hash", "hash_kind"}
# What aiohttp's multipart reader raises on a broken body: bad part headers, a cut-short or
# undelimited part, an overlong or undecodable `_charset_` part, its own sanity checks.
_MALFORMED = (BadHttpMessage, ValueError, RuntimeError, AssertionError)

Query = tuple[str, str]  # (hash kind, normalised hex value)


class MatchIndex(WorkerContext):
    """The workers' loader (first load, in-place updates after imports, full reload when a
    threshold changes), shared by the request threads.

    A full reload builds a new ``Matcher`` and swaps it in with one assignment, so matching
    goes on with the old one meanwhile; an in-place update changes the index under the
    requests, so it holds ``lock``, which every match holds too."""

    def __init__(self, settings: Settings, store: Store) -> None:
        # Redis serves the worker's jobs only; the index is read from the store.
        super().__init__(settings, None, store)  # type: ignore[arg-type]
        self.lock = threading.Lock()

    def _apply_changes(self, session: Session) -> None:
        with self.lock:
            super()._apply_changes(session)


@dataclass
class _State:
    index: MatchIndex | None = None
    task: asyncio.Future[None] | None = None  # the load or refresh under way
    timer: asyncio.TimerHandle | None = None  # the load after startup, until it starts
    checked_at: float = float("-inf")
    uploads: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(UPLOADS_AT_ONCE))


MATCH_STATE = web.AppKey("match_state", _State)


def setup(app: web.Application) -> None:
    """Register this module's routes."""
    app[MATCH_STATE] = _State()
    app.router.add_post("/api/match", match, name="api_match")
    app.on_startup.append(_load_at_startup)
    app.on_shutdown.append(_finish_refresh)


# --- the handler ----------------------------------------------------------------------------


@reads_only  # a lookup: a platform's thousands of calls a day are not changes to audit
@requires("viewer")
async def match(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    parsed = await _parse(request, settings, request.app[MATCH_STATE].uploads)
    index = await _ready_index(request.app)
    if isinstance(parsed, ImageHashes):
        decisions = [await asyncio.to_thread(match_image, index, parsed)]
    else:
        decisions = await asyncio.to_thread(match_hashes, index, parsed)
    detailed = request[IDENTITY].allows("operator")
    lists: dict[int, str] = {}
    if detailed:
        ids = {d.entry_id for ds in decisions for d in ds}
        if ids:
            lists = await asyncio.to_thread(list_names, request.app[STORE], ids)
    return json_response(
        {"results": [_result(ds, lists if detailed else None) for ds in decisions]}
    )


def _result(decisions: list[MatchDecision], lists: dict[int, str] | None) -> dict[str, Any]:
    matches = []
    for d in sorted(decisions, key=lambda d: (d.distance, d.hash_kind, d.entry_id)):
        item: dict[str, Any] = {
            "kind": d.kind,
            "hash_kind": d.hash_kind,
            "distance": d.distance,
            "variant": d.variant,
        }
        if lists is not None:  # operators and admins only
            item |= {"list": lists.get(d.entry_id), "entry_id": d.entry_id}
        matches.append(item)
    return {"result": "match" if matches else "no-match", "matches": matches}


# --- matching (blocking: run in a thread) ---------------------------------------------------


def match_hashes(index: MatchIndex, queries: Sequence[Query]) -> list[list[MatchDecision]]:
    """Each hash as given: digests by equality, PDQ within each entry's threshold (variant
    ``original``); the PDQ hashes of a request go to the index as one batch."""
    with index.lock:
        assert index.matcher is not None
        return index.matcher.match_hashes(queries)


def match_image(index: MatchIndex, hashes: ImageHashes) -> list[MatchDecision]:
    """What a worker records for this image: exact digests and the best PDQ variant."""
    with index.lock:
        assert index.matcher is not None
        return index.matcher.match(hashes)


def list_names(store: Store, entry_ids: set[int]) -> dict[int, str]:
    wanted = sorted(entry_ids)
    names: dict[int, str] = {}
    with store.session() as session:
        for start in range(0, len(wanted), _ID_CHUNK):
            rows = session.execute(
                select(HashEntry.id, HashList.name)
                .join(HashList, HashList.id == HashEntry.list_id)
                .where(HashEntry.id.in_(wanted[start : start + _ID_CHUNK]))
            )
            names.update({entry_id: name for entry_id, name in rows})
    return names


# --- the index, per app ---------------------------------------------------------------------


async def _load_at_startup(app: web.Application) -> None:
    """Load the index soon, beside the startup rather than in it: at 1M hashes it takes
    ~24 s, which the first request would otherwise wait for whole. Requests meanwhile wait
    for this same load; a failed one is tried again by the next request."""
    if LOAD_AFTER_STARTUP is not None:
        loop = asyncio.get_running_loop()
        app[MATCH_STATE].timer = loop.call_later(LOAD_AFTER_STARTUP, _index, app)


def _index(app: web.Application) -> MatchIndex:
    """The app's index, its first load started if none has finished or is under way."""
    state = app[MATCH_STATE]
    if state.index is None:
        state.index = MatchIndex(app[SETTINGS], app[STORE])
    if state.index.matcher is None and state.task is None:
        _start_refresh(state, state.index)
    return state.index


async def _ready_index(app: web.Application) -> MatchIndex:
    state = app[MATCH_STATE]
    index = _index(app)
    if index.matcher is None:
        # The first requests wait for the load (one load, however many are waiting).
        assert state.task is not None
        try:
            await asyncio.shield(state.task)
        except Exception as exc:
            raise web.HTTPServiceUnavailable(
                text="the hash lists could not be loaded from the store; try again shortly"
            ) from exc
    elif state.task is None and time.monotonic() - state.checked_at >= REFRESH_EVERY:
        _start_refresh(state, index)  # in the background: this request uses the loaded index
    return index


def _start_refresh(state: _State, index: MatchIndex) -> asyncio.Future[None]:
    state.checked_at = time.monotonic()
    task = asyncio.ensure_future(asyncio.to_thread(index.refresh_if_stale))

    def done(task: asyncio.Future[None]) -> None:
        state.task = None
        if not task.cancelled() and task.exception() is not None:
            log.error("could not refresh the match index", exc_info=task.exception())

    task.add_done_callback(done)
    state.task = task
    return task


async def _finish_refresh(app: web.Application) -> None:
    """Let a load under way finish before the store is closed; start none."""
    state = app[MATCH_STATE]
    if state.timer is not None:
        state.timer.cancel()
    task = state.task
    if task is not None:
        await asyncio.gather(task, return_exceptions=True)


# --- parsing --------------------------------------------------------------------------------


async def _parse(
    request: web.Request, settings: Settings, uploads: asyncio.Semaphore
) -> list[Query] | ImageHashes:
    ctype = request.content_type
    if ctype == "application/json" or ctype.endswith("+json"):
        body = await _read_capped(request.content, MAX_JSON_BYTES, request.content_length, "JSON")
        return _queries(body)
    limit = settings.fetch_max_bytes
    upload = ctype in ("multipart/form-data", "application/octet-stream")
    if not (upload or ctype.startswith("image/")):
        raise web.HTTPUnsupportedMediaType(
            text=f"unsupported Content-Type {ctype!r}: send application/json hashes, "
            "a multipart/form-data field 'image', or an image/* body"
        )
    async with uploads:  # the wait comes before the read: a waiting upload holds no bytes
        if ctype == "multipart/form-data":
            data = await _read_form_image(request, limit)
        else:
            data = await _read_capped(request.content, limit, request.content_length, "image")
        return await asyncio.to_thread(_hash_upload, data, settings)


def _queries(body: bytes) -> list[Query]:
    try:
        doc = loads(body)
    except ValueError as exc:  # bad JSON or UTF-8, too deep, or text the store refuses
        raise web.HTTPBadRequest(text=f"the body is not valid JSON: {exc}") from None
    # Unknown fields are refused, not ignored: a misspelt one would otherwise go unnoticed.
    if not isinstance(doc, dict) or doc.keys() != {"queries"}:
        raise web.HTTPBadRequest(
            text='expected {"queries": [{"hash": ..., "hash_kind": ...}, ...]} and no other field'
        )
    items = doc["queries"]
    if not isinstance(items, list) or not items:
        raise web.HTTPBadRequest(text="'queries' must be a non-empty list")
    if len(items) > MAX_QUERIES:
        raise web.HTTPRequestEntityTooLarge(
            MAX_QUERIES,
            len(items),
            text=f"at most {MAX_QUERIES:,} queries per request, got {len(items):,}",
        )
    return [_query(item, i) for i, item in enumerate(items)]


def _query(item: object, at: int) -> Query:
    kind_cls = None
    if isinstance(item, dict) and item.keys() == _QUERY_FIELDS:
        value, kind = item["hash"], item["hash_kind"]
        kind_cls = KINDS.get(kind) if isinstance(kind, str) else None
        if kind_cls is not None and isinstance(value, str):
            if len(value) != kind_cls.hex_length:  # before validate(), which strips spaces
                raise _bad(at, f"{kind} must be {kind_cls.hex_length} hex digits, got {len(value)}")
            try:
                return kind_cls.name, kind_cls.validate(value)
            except ValueError as exc:
                raise _bad(at, str(exc)) from None
    # The other refusals, worked out only when there is one (1,000 queries must parse fast).
    if not isinstance(item, dict) or item.keys() != _QUERY_FIELDS:
        raise _bad(at, 'expected {"hash": ..., "hash_kind": ...} and no other field')
    if kind_cls is None:
        kinds = ", ".join(sorted(KINDS))
        raise _bad(at, f"'hash_kind' must be one of {kinds}, got {item['hash_kind']!r}")
    raise _bad(at, "'hash' must be a hex string")


def _bad(at: int, problem: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=f"queries[{at}]: {problem}")


async def _read_capped(
    stream: StreamReader | BodyPartReader, limit: int, declared: int | None, what: str
) -> bytes:
    """The body (or part) in memory, refused as soon as it passes ``limit``: an oversized
    upload is never buffered whole."""
    if declared is not None and declared > limit:
        raise _too_large(what, limit, declared)
    data = bytearray()
    while True:
        chunk = await (
            stream.read_chunk(_CHUNK) if isinstance(stream, BodyPartReader) else stream.read(_CHUNK)
        )
        if not chunk:
            return bytes(data)
        data += chunk
        if len(data) > limit:
            raise _too_large(what, limit, len(data))


def _too_large(what: str, limit: int, size: int) -> web.HTTPRequestEntityTooLarge:
    return web.HTTPRequestEntityTooLarge(
        limit, size, text=f"the {what} is larger than the {limit:,}-byte limit"
    )


async def _read_form_image(request: web.Request, limit: int) -> bytes:
    # request.post() would spool file fields to a temporary file: read the part ourselves.
    declared = request.content_length
    if declared is not None and declared > limit + _MULTIPART_SLACK:
        raise _too_large("image", limit, declared)
    # A broken body is the sender's fault (400); the caps answer 413 themselves.
    try:
        reader = await request.multipart()
        part = await reader.next()
        if not isinstance(part, BodyPartReader) or part.name != "image":
            name = part.name if isinstance(part, BodyPartReader) else None
            raise web.HTTPBadRequest(text=f"expected one form field named 'image', got {name!r}")
        data = await _read_capped(part, limit, None, "image")
        if await reader.next() is not None:
            raise web.HTTPBadRequest(text="send one form field, 'image', and nothing else")
    except _MALFORMED as exc:
        reason = exc.message if isinstance(exc, BadHttpMessage) else str(exc)
        raise web.HTTPBadRequest(text=f"malformed multipart body: {reason[:200]}") from None
    return data


def _hash_upload(data: bytes, settings: Settings) -> ImageHashes:
    if not data:
        raise web.HTTPBadRequest(text="the image is empty")
    hashes = hash_image_bytes(
        data,
        max_pixels=settings.max_image_pixels,
        max_bytes=settings.fetch_max_bytes,
        reference=False,  # the workers' path, so an upload matches as a crawled copy would
    )
    if hashes.error == "decompression_bomb":
        raise web.HTTPRequestEntityTooLarge(
            settings.max_image_pixels,
            (hashes.width or 0) * (hashes.height or 0),
            text=f"the image has too many pixels ({hashes.error_detail})",
        )
    if hashes.error == "too_large":
        raise _too_large("image", settings.fetch_max_bytes, len(data))
    if hashes.error is not None:
        raise web.HTTPBadRequest(
            text=f"the upload could not be decoded as an image ({hashes.error}); "
            "send its hashes instead"
        )
    return hashes
