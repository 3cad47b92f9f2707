"""POST /api/match: the real app, a real SQLite store, a real list imported, real tokens.

The list holds the hashes of a benign photo (its three digests and its PDQ, as a worker
computes them) and of a second PDQ list at a tighter threshold. Queries are sent as hashes
and as uploaded images (multipart and raw); every refusal is a 4xx JSON error.
"""

from __future__ import annotations

import asyncio
import io
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from PIL import Image

from arachne.dashboard import match_api
from arachne.matcher.hashing import ImageHashes, hash_image_bytes
from arachne.settings import Settings
from arachne.store.db import Store
from arachne.store.hashlists import import_list
from arachne.store.users import add_user, create_token
from tests.console import bearer as auth
from tests.console import client_for

PHOTO = "mpl_grace_hopper.jpg"  # 512 x 600
MAX_BYTES = 200_000
MAX_PIXELS = 2_000_000
OTHER_PDQ = "f0" * 32  # an entry of the tight list (threshold 10)


def flip(hex_hash: str, bits: int) -> str:
    """The hash with its first ``bits`` bits flipped (Hamming distance ``bits``)."""
    value = int(hex_hash, 16) ^ (((1 << bits) - 1) << (256 - bits))
    return f"{value:064x}"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        redis_url="redis://127.0.0.1:6379/6",  # never used by /api/match
        database_url=None,
        queue_name="arachne-test-match",
        fetch_max_bytes=MAX_BYTES,
        max_image_pixels=MAX_PIXELS,
    )


@pytest.fixture
def photo(photos: Path) -> bytes:
    return (photos / PHOTO).read_bytes()


@pytest.fixture
def photo_hashes(photo: bytes, settings: Settings) -> ImageHashes:
    hashes = hash_image_bytes(photo, reference=False)  # what a worker stores
    assert hashes.pdq and hashes.error is None
    return hashes


@pytest.fixture
def store(settings: Settings, photo_hashes: ImageHashes, tmp_path: Path) -> Iterator[Store]:
    store = Store.open(settings)
    known = tmp_path / "known.txt"
    known.write_text(
        f"md5 {photo_hashes.md5}\nsha1 {photo_hashes.sha1}\n"
        f"sha256 {photo_hashes.sha256}\npdq {photo_hashes.pdq}\n"
    )
    import_list(store, "known", known)
    tight = tmp_path / "tight.txt"
    tight.write_text(f"pdq {OTHER_PDQ}\n")
    import_list(store, "tight", tight, threshold=10)
    yield store
    store.dispose()


@pytest.fixture
def tokens(store: Store) -> dict[str, str]:
    out = {}
    with store.session() as session:
        add_user(session, "admin", "admin", "correct horse battery", actor="test")
        for role in ("viewer", "operator"):
            out[role] = create_token(session, f"{role}-token", role, actor="test")[1]
    return out


async def post_json(client: TestClient, token: str, body: Any) -> tuple[int, dict[str, Any]]:
    resp = await client.post("/api/match", json=body, headers=auth(token))
    return resp.status, await resp.json()


async def post_raw(
    client: TestClient, token: str, data: Any, ctype: str | None = None
) -> tuple[int, dict[str, Any]]:
    """A body as it is (bytes, a stream or a form), with this Content-Type when given."""
    headers = auth(token) | ({"Content-Type": ctype} if ctype else {})
    resp = await client.post("/api/match", data=data, headers=headers)
    return resp.status, await resp.json()


def image_bytes(img: Image.Image, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


# --- hashes ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_hash_queries_exact_near_and_no_match_in_order(settings, tokens, photo_hashes):
    h = photo_hashes
    queries = [
        {"hash": h.md5, "hash_kind": "md5"},
        {"hash": h.sha1.upper(), "hash_kind": "sha1"},  # upper-case hex is fine
        {"hash": h.sha256, "hash_kind": "sha256"},
        {"hash": h.pdq, "hash_kind": "pdq"},
        {"hash": flip(h.pdq, 7), "hash_kind": "pdq"},
        {"hash": flip(h.pdq, 40), "hash_kind": "pdq"},  # beyond 31
        {"hash": "0" * 32, "hash_kind": "md5"},
        {"hash": h.sha256, "hash_kind": "pdq"},  # a digest is not a PDQ hash
    ]
    async with client_for(settings) as client:
        status, body = await post_json(client, tokens["viewer"], {"queries": queries})
    assert status == 200, body
    results = body["results"]
    assert [r["result"] for r in results] == ["match"] * 5 + ["no-match"] * 3
    for r, kind in zip(results[:3], ("md5", "sha1", "sha256"), strict=True):
        assert r["matches"] == [
            {"kind": "exact", "hash_kind": kind, "distance": 0, "variant": None}
        ]
    assert results[3]["matches"] == [
        {"kind": "near", "hash_kind": "pdq", "distance": 0, "variant": "original"}
    ]
    assert results[4]["matches"][0]["distance"] == 7
    assert all(r["matches"] == [] for r in results[5:])


@pytest.mark.asyncio
async def test_each_lists_threshold_applies(settings, tokens):
    async with client_for(settings) as client:
        status, body = await post_json(
            client,
            tokens["viewer"],
            {"queries": [{"hash": flip(OTHER_PDQ, n), "hash_kind": "pdq"} for n in (10, 11)]},
        )
    assert status == 200
    assert [r["result"] for r in body["results"]] == ["match", "no-match"]


@pytest.mark.asyncio
async def test_list_and_entry_ids_for_operators_only(settings, tokens, photo_hashes):
    body = {"queries": [{"hash": photo_hashes.pdq, "hash_kind": "pdq"}]}
    async with client_for(settings) as client:
        _, viewer = await post_json(client, tokens["viewer"], body)
        _, operator = await post_json(client, tokens["operator"], body)
    assert set(viewer["results"][0]["matches"][0]) == {"kind", "hash_kind", "distance", "variant"}
    assert "known" not in str(viewer) and "entry_id" not in str(viewer)
    match = operator["results"][0]["matches"][0]
    assert match["list"] == "known" and isinstance(match["entry_id"], int)


@pytest.mark.asyncio
async def test_list_changes_are_picked_up(settings, tokens, store, tmp_path, monkeypatch):
    monkeypatch.setattr(match_api, "REFRESH_EVERY", 0.0)
    query = {"queries": [{"hash": "ab" * 32, "hash_kind": "sha256"}]}
    async with client_for(settings) as client:
        _, body = await post_json(client, tokens["viewer"], query)
        assert body["results"][0]["result"] == "no-match"
        added = tmp_path / "more.txt"
        added.write_text(f"sha256 {'ab' * 32}\n")
        import_list(store, "more", added)
        for _ in range(50):  # the refresh runs beside the requests, not before them
            _, body = await post_json(client, tokens["viewer"], query)
            if body["results"][0]["result"] == "match":
                break
            await asyncio.sleep(0.05)
        assert body["results"][0]["result"] == "match"
        added.write_text(f"sha256 {'cd' * 32}\n")  # the entry is retracted
        import_list(store, "more", added, force=True, max_retract_share=1.0)
        for _ in range(50):
            _, body = await post_json(client, tokens["viewer"], query)
            if body["results"][0]["result"] == "no-match":
                break
            await asyncio.sleep(0.05)
        assert body["results"][0]["result"] == "no-match"


@pytest.mark.asyncio
async def test_a_big_batch_does_not_hold_up_single_queries(settings, tokens, photo_hashes):
    batch = {"queries": [{"hash": flip(photo_hashes.pdq, i % 60), "hash_kind": "pdq"}
                         for i in range(1000)]}  # fmt: skip
    single = {"queries": [{"hash": photo_hashes.md5, "hash_kind": "md5"}]}
    async with client_for(settings) as client:
        answers = await asyncio.gather(
            post_json(client, tokens["viewer"], batch),
            *(post_json(client, tokens["viewer"], single) for _ in range(5)),
        )
    (status, body), *singles = answers
    assert status == 200 and len(body["results"]) == 1000
    assert sum(r["result"] == "match" for r in body["results"]) == 1000 // 60 * 32 + 32
    assert all(s == 200 and b["results"][0]["result"] == "match" for s, b in singles)


# --- uploads --------------------------------------------------------------------------------


def form_with(photo: bytes) -> FormData:
    form = FormData()
    form.add_field("image", photo, filename="x.jpg", content_type="image/jpeg")
    return form


@pytest.mark.asyncio
async def test_uploaded_photos_match_exactly_by_pdq_by_variant_or_not(settings, tokens, photos):
    photo = (photos / PHOTO).read_bytes()
    rotated = image_bytes(Image.open(photos / PHOTO).rotate(90, expand=True), "JPEG")
    other = (photos / "skimage_rocket.jpg").read_bytes()
    async with client_for(settings) as client:
        status, same = await post_raw(client, tokens["viewer"], form_with(photo))
        _, turned = await post_raw(client, tokens["operator"], rotated, "image/jpeg")
        _, unrelated = await post_raw(client, tokens["viewer"], other, "image/jpeg")
    assert status == 200, same
    (result,) = same["results"]
    assert result["result"] == "match" and result["matches"][0]["distance"] == 0
    kinds = {(m["kind"], m["hash_kind"]) for m in result["matches"]}
    assert kinds == {("exact", "md5"), ("exact", "sha1"), ("exact", "sha256"), ("near", "pdq")}
    (match,) = turned["results"][0]["matches"]  # no digest matches: other bytes
    assert match["kind"] == "near" and match["hash_kind"] == "pdq" and match["list"] == "known"
    assert match["variant"] in ("rot90", "rot270") and match["distance"] <= 31
    assert unrelated == {"results": [{"result": "no-match", "matches": []}]}


@pytest.mark.asyncio
async def test_no_image_bytes_are_written(settings, tokens, photo, tmp_path, monkeypatch):
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an upload reached a temporary file")

    for name in ("TemporaryFile", "NamedTemporaryFile", "SpooledTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, refuse)
    async with client_for(settings) as client:
        assert (await post_raw(client, tokens["viewer"], form_with(photo)))[0] == 200
        assert (await post_raw(client, tokens["viewer"], photo, "image/jpeg"))[0] == 200
    probe = photo[1000:1400]  # a stretch of the JPEG's entropy-coded data
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert path.suffix.lower() not in (".jpg", ".jpeg", ".png", ".webp", ".gif")
            assert probe not in path.read_bytes(), path


# --- refusals -------------------------------------------------------------------------------

BAD_JSON = [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "no other field"),
    (b'{"hash": "' + b"0" * 32 + b'", "hash_kind": "md5"}', "no other field"),
    (b'{"queries": [{"hash": "' + b"0" * 32 + b'", "hash_kind": "md5"}], "x": 1}', "no other"),
    (b'{"queries": [{"hash": "' + b"0" * 32 + b'", "hash_kind": "md5", "x": 1}]}', "no other"),
    (b'{"queries": [{"hash": "' + b"0" * 32 + b'", "hash_kind": "MD5"}]}', "must be one of"),
    (b'{"queries": [{"hash": " ' + b"0" * 32 + b'", "hash_kind": "md5"}]}', "got 33"),
    (b'{"queries": [{"hash": "' + b"0" * 32 + b'", "hash_kind": ["md5"]}]}', "must be one of"),
    (b'{"queries": []}', "non-empty list"),
    (b'{"queries": {"hash": "00"}}', "non-empty list"),
    (b'{"queries": ["abc"]}', "queries[0]: expected"),
    (b'{"queries": [{"hash": "00", "hash_kind": "crc32"}]}', "'hash_kind' must be one of"),
    (b'{"queries": [{"hash": "00"}]}', "queries[0]: expected"),
    (b'{"queries": [{"hash": 12, "hash_kind": "md5"}]}', "'hash' must be a hex string"),
    (b'{"queries": [{"hash": "abc", "hash_kind": "md5"}]}', "md5 must be 32 hex digits, got 3"),
    (b'{"queries": [{"hash": "' + b"g" * 64 + b'", "hash_kind": "pdq"}]}', "not hexadecimal"),
    (b'{"queries": [{"hash": "' + b"0" * 63 + b'", "hash_kind": "sha256"}]}', "got 63"),
    (b"\xff\xfe", "not valid JSON"),
]


@pytest.mark.asyncio
async def test_bad_json_bodies_are_400_with_a_reason(settings, tokens):
    async with client_for(settings) as client:
        for raw, reason in BAD_JSON:
            status, body = await post_raw(client, tokens["viewer"], raw, "application/json")
            assert status == 400, (raw, body)
            assert body["error"] == "Bad Request" and reason in body["detail"], (raw, body)


@pytest.mark.asyncio
async def test_more_than_1000_queries_is_413(settings, tokens):
    queries = [{"hash": "0" * 32, "hash_kind": "md5"}] * 1001
    async with client_for(settings) as client:
        status, body = await post_json(client, tokens["viewer"], {"queries": queries})
    assert status == 413 and "at most 1,000 queries" in body["detail"]


@pytest.mark.asyncio
async def test_oversized_bodies_and_images_are_413_before_being_read(settings, tokens):
    big = b"\xff\xd8" + b"\0" * MAX_BYTES

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the cap is met mid-read
        for start in range(0, len(big), 16_384):
            yield big[start : start + 16_384]

    form = form_with(big)
    padded = b'{"queries": [{"hash": "' + b"0" * 32 + b'", "hash_kind": "md5"}]' + b" " * (1 << 20)
    bomb = image_bytes(Image.new("L", (2000, 1001), 128))  # a few KB, 2,002,000 pixels
    viewer = tokens["viewer"]
    async with client_for(settings) as client:
        for data, ctype in ((big, "image/jpeg"), (chunked(), "image/jpeg"), (form, None)):
            status, body = await post_raw(client, viewer, data, ctype)
            assert status == 413 and f"{MAX_BYTES:,}-byte limit" in body["detail"], body
        status, body = await post_raw(client, viewer, padded + b"}", "application/json")
        assert status == 413 and "JSON is larger than" in body["detail"], body
        status, body = await post_raw(client, viewer, bomb, "image/png")
        assert status == 413 and "too many pixels" in body["detail"], body


@pytest.mark.asyncio
async def test_other_bad_uploads_are_4xx(settings, tokens, photo):
    viewer = tokens["viewer"]
    wrong_field, extra_field = FormData(), form_with(photo)
    wrong_field.add_field("picture", photo, filename="x.jpg", content_type="image/jpeg")
    extra_field.add_field("note", "hello")
    cases = [
        (b"plain text, not a picture", "image/png", 400, "could not be decoded"),
        (b"", "image/png", 400, "empty"),
        (b"hash=abc", "text/plain", 415, "unsupported Content-Type"),
        (wrong_field, None, 400, "'image'"),
        (extra_field, None, 400, "nothing else"),
        (b"--x--", "multipart/form-data", 400, "multipart"),
    ]
    async with client_for(settings) as client:
        for data, ctype, want, reason in cases:
            status, body = await post_raw(client, viewer, data, ctype)
            assert status == want and reason in body["detail"], (ctype, body)


MALFORMED_FORMS = [  # each made aiohttp's reader raise, once a 500
    (b'--b\r\nContent-Disposition: form-data; name="\x19\xc3\xa9"\r\n\r\nab\r\n--b--\r\n',
     "Invalid HTTP header"),
    (b"--b\r\nnot a header\r\n\r\nab\r\n--b--\r\n", "Invalid HTTP header"),
    (b"--b\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\nab\r\n--b--\r\n", "8190 bytes"),
    (b"--b\r\n" + b"X-A: 1\r\n" * 200 + b"\r\nab\r\n--b--\r\n", "Too many headers"),
    (b'--b\r\nContent-Disposition: form-data; name="image"\r\n\r\nab', "after EOF"),
    # the image part is fine, the next part's header is not
    (b'--b\r\nContent-Disposition: form-data; name="image"\r\n\r\nab\r\n'
     b'--b\r\nContent-Disposition: form-data; name="\x01"\r\n\r\nx\r\n--b--\r\n',
     "Invalid HTTP header"),
    (b'--b\r\nContent-Disposition: form-data; name="_charset_"\r\n\r\n\xff\r\n--b--\r\n',
     "can't decode"),
    (b'--b\r\nContent-Disposition: form-data; name="_charset_"\r\n\r\n' + b"u" * 40
     + b"\r\n--b--\r\n", "Invalid default charset"),
]  # fmt: skip


@pytest.mark.asyncio
async def test_malformed_multipart_bodies_are_400(settings, tokens):
    async with client_for(settings) as client:
        for raw, reason in MALFORMED_FORMS:
            status, body = await post_raw(
                client, tokens["viewer"], raw, "multipart/form-data; boundary=b"
            )
            assert status == 400, (raw[:80], body)
            assert body["detail"].startswith("malformed multipart body: "), body
            assert reason in body["detail"], body
        ctype = "multipart/form-data; boundary=" + "x" * 71
        status, body = await post_raw(client, tokens["viewer"], b"--x--", ctype)
        assert status == 400 and "too long" in body["detail"], body


@pytest.mark.asyncio
async def test_needs_a_valid_token(settings, tokens):
    body = {"queries": [{"hash": "0" * 32, "hash_kind": "md5"}]}
    async with client_for(settings) as client:
        resp = await client.post("/api/match", json=body)
        assert resp.status == 401
        resp = await client.post("/api/match", json=body, headers=auth("arachne_nope"))
        assert resp.status == 401
        assert (await resp.json())["error"] == "Unauthorized"


def flaky_loads(monkeypatch: pytest.MonkeyPatch, failures: int) -> list[int]:
    """The index's loads, the first ``failures`` of them failing; the list counts them."""
    calls: list[int] = []
    real = match_api.MatchIndex.refresh_if_stale

    def flaky(self: match_api.MatchIndex) -> None:
        calls.append(1)
        if len(calls) <= failures:
            raise OSError("store unreachable")
        real(self)

    monkeypatch.setattr(match_api.MatchIndex, "refresh_if_stale", flaky)
    return calls


@pytest.mark.asyncio
async def test_an_index_that_cannot_load_is_503_then_recovers(settings, tokens, monkeypatch):
    monkeypatch.setattr(match_api, "LOAD_AFTER_STARTUP", None)  # the first request loads it
    flaky_loads(monkeypatch, failures=1)
    body = {"queries": [{"hash": "0" * 32, "hash_kind": "md5"}]}
    async with client_for(settings) as client:
        status, first = await post_json(client, tokens["viewer"], body)
        assert status == 503 and "could not be loaded" in first["detail"]
        status, second = await post_json(client, tokens["viewer"], body)
        assert status == 200 and second["results"][0]["result"] == "no-match"


@pytest.mark.asyncio
async def test_the_index_loads_from_startup_without_holding_it_up(
    settings, tokens, photo_hashes, monkeypatch
):
    monkeypatch.setattr(match_api, "LOAD_AFTER_STARTUP", 0.0)
    monkeypatch.setattr(match_api, "REFRESH_EVERY", 3600.0)
    release, loads = threading.Event(), []
    real = match_api.MatchIndex.refresh_if_stale

    def slow(self: match_api.MatchIndex) -> None:
        loads.append(1)
        assert release.wait(10)
        real(self)

    monkeypatch.setattr(match_api.MatchIndex, "refresh_if_stale", slow)
    body = {"queries": [{"hash": photo_hashes.pdq, "hash_kind": "pdq"}]}
    async with client_for(settings) as client:  # started, while the load is held up
        for _ in range(100):
            if loads:
                break
            await asyncio.sleep(0.01)
        assert loads == [1]
        waiting = asyncio.ensure_future(post_json(client, tokens["viewer"], body))
        await asyncio.sleep(0.2)
        assert not waiting.done()  # the request waits for that load, and starts no other
        release.set()
        status, answer = await waiting
        assert status == 200 and answer["results"][0]["result"] == "match"
        assert (await post_json(client, tokens["viewer"], body))[0] == 200
    assert loads == [1]


@pytest.mark.asyncio
async def test_a_failed_startup_load_is_tried_again_by_a_request(settings, tokens, monkeypatch):
    monkeypatch.setattr(match_api, "LOAD_AFTER_STARTUP", 0.0)
    calls = flaky_loads(monkeypatch, failures=1)
    body = {"queries": [{"hash": "0" * 32, "hash_kind": "md5"}]}
    async with client_for(settings) as client:
        state = client.server.app[match_api.MATCH_STATE]
        for _ in range(100):
            if calls and state.task is None:  # the startup load has failed
                break
            await asyncio.sleep(0.01)
        assert calls == [1] and state.index is not None and state.index.matcher is None
        status, answer = await post_json(client, tokens["viewer"], body)
    assert status == 200 and answer["results"][0]["result"] == "no-match"
    assert calls == [1, 1]


@pytest.mark.asyncio
async def test_an_app_that_stops_before_the_startup_delay_never_loads(settings, monkeypatch):
    calls = flaky_loads(monkeypatch, failures=0)
    monkeypatch.setattr(match_api, "LOAD_AFTER_STARTUP", 0.2)
    async with client_for(settings) as client:
        assert (await client.get("/status/live")).status == 200
    await asyncio.sleep(0.3)  # past the delay: the timer went with the app
    assert calls == []


@pytest.mark.asyncio
async def test_no_lists_yet_is_no_match(tmp_path):
    settings = Settings(
        data_dir=tmp_path / "empty", redis_url="redis://127.0.0.1:6379/6", database_url=None
    )
    store = Store.open(settings)
    with store.session() as session:
        token = create_token(session, "platform", "viewer", actor="test")[1]
    store.dispose()
    async with client_for(settings) as client:
        status, body = await post_json(
            client, token, {"queries": [{"hash": "0" * 64, "hash_kind": "pdq"}]}
        )
    assert status == 200 and body == {"results": [{"result": "no-match", "matches": []}]}
