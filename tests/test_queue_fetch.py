"""The image fetcher against a real aiohttp server on 127.0.0.1 (bytes stay in memory)."""

from __future__ import annotations

import asyncio
import io
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from PIL import Image

from arachne.queue.fetch import FetchConfig, FetchResult, fetch_many, sniff_image

MAX_BYTES = 4096
# 1.5 s: far below the slow routes' 3 s, far above a loaded 2-core machine's jitter.
FAST = FetchConfig(timeout=1.5, max_bytes=MAX_BYTES, concurrency=16, per_host=6, allow_private=True)


def image_bytes(fmt: str, size: tuple[int, int] = (32, 24)) -> bytes:
    img = Image.new("RGB", size, (200, 60, 30))
    for x in range(size[0]):
        img.putpixel((x, x % size[1]), (0, 0, 255))
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


IMAGES = {
    name: image_bytes(fmt)
    for name, fmt in (("jpg", "JPEG"), ("png", "PNG"), ("gif", "GIF"), ("webp", "WEBP"))
}
CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp"}


class Concurrency:
    def __init__(self) -> None:
        self.now = 0
        self.peak = 0


def make_app(concurrency: Concurrency) -> web.Application:
    routes = web.RouteTableDef()

    @routes.get("/img.{ext}")
    async def image(request: web.Request) -> web.Response:
        ext = request.match_info["ext"]
        return web.Response(body=IMAGES[ext], content_type=CONTENT_TYPES[ext])

    @routes.get("/wrong-type.png")
    async def wrong_type(request: web.Request) -> web.Response:
        # A real PNG served as text/html: sniffing decides, not the header.
        return web.Response(body=IMAGES["png"], content_type="text/html")

    @routes.get("/html-as-jpeg")
    async def html_as_jpeg(request: web.Request) -> web.Response:
        return web.Response(
            body=b"<!doctype html><html><body>hi</body></html>", content_type="image/jpeg"
        )

    @routes.get("/missing")
    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404, body=IMAGES["png"], content_type="image/png")

    @routes.get("/server-error")
    async def server_error(request: web.Request) -> web.Response:
        return web.Response(status=503, text="down")

    @routes.get("/sized/{n}")
    async def sized(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        body = IMAGES["png"] + b"\0" * (n - len(IMAGES["png"]))
        return web.Response(body=body, content_type="image/png")

    @routes.get("/chunked/{n}")
    async def chunked(request: web.Request) -> web.StreamResponse:
        n = int(request.match_info["n"])
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(IMAGES["png"])
        sent = len(IMAGES["png"])
        while sent < n:
            chunk = b"\0" * min(1000, n - sent)
            await resp.write(chunk)
            sent += len(chunk)
        await resp.write_eof()
        return resp

    @routes.get("/slow")
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(3)
        return web.Response(body=IMAGES["png"], content_type="image/png")

    @routes.get("/slow-body")
    async def slow_body(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        await resp.prepare(request)
        await resp.write(IMAGES["png"][:20])
        await asyncio.sleep(3)
        await resp.write(IMAGES["png"][20:])
        return resp

    @routes.get("/empty")
    async def empty(request: web.Request) -> web.Response:
        return web.Response(body=b"", content_type="image/jpeg")

    @routes.get("/redirect/{hops}")
    async def redirect(request: web.Request) -> web.Response:
        hops = int(request.match_info["hops"])
        target = "/img.gif" if hops <= 1 else f"/redirect/{hops - 1}"
        raise web.HTTPFound(target)

    @routes.get("/loop")
    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    @routes.get("/headers")
    async def headers(request: web.Request) -> web.Response:
        return web.Response(
            body=IMAGES["jpg"],
            content_type="image/jpeg",
            headers={
                "Via": "1.1 cache.test",
                "X-Cache": "HIT",
                "CF-Ray": "abc123-AMS",
                "X-Served-By": "cache-ams1",
                "Set-Cookie": "session=secret",
                "X-Private": "not kept",
            },
        )

    @routes.get("/ua")
    async def ua(request: web.Request) -> web.Response:
        if request.headers.get("User-Agent") != "ArachneTest/9":
            return web.Response(status=403)
        return web.Response(body=IMAGES["png"], content_type="image/png")

    @routes.get("/counted/{i}")
    async def counted(request: web.Request) -> web.Response:
        concurrency.now += 1
        concurrency.peak = max(concurrency.peak, concurrency.now)
        try:
            await asyncio.sleep(0.05)
        finally:
            concurrency.now -= 1
        return web.Response(body=IMAGES["png"], content_type="image/png")

    @routes.get("/delay/{ms}")
    async def delay(request: web.Request) -> web.Response:
        await asyncio.sleep(int(request.match_info["ms"]) / 1000)
        return web.Response(body=IMAGES["jpg"], content_type="image/jpeg")

    app = web.Application()
    app.add_routes(routes)
    return app


@asynccontextmanager
async def serve(concurrency: Concurrency | None = None) -> AsyncIterator[str]:
    runner = web.AppRunner(
        make_app(concurrency or Concurrency()), shutdown_timeout=0.1, handler_cancellation=True
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def fetch_paths(paths: list[str], config: FetchConfig = FAST) -> list[FetchResult]:
    async def go() -> list[FetchResult]:
        async with serve() as base:
            return await fetch_many([base + p for p in paths], config)

    return asyncio.run(go())


def fetch_one(path: str, config: FetchConfig = FAST) -> FetchResult:
    (result,) = fetch_paths([path], config)
    assert result.url.endswith(path)
    return result


def run(coro_factory: Callable[[str], Awaitable[list[FetchResult]]]) -> list[FetchResult]:
    async def go() -> list[FetchResult]:
        async with serve() as base:
            return await coro_factory(base)

    return asyncio.run(go())


# --- sniffing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"), [("jpg", "jpeg"), ("png", "png"), ("gif", "gif"), ("webp", "webp")]
)
def test_sniff_real_images(name: str, fmt: str) -> None:
    assert sniff_image(IMAGES[name][:16]) == fmt


@pytest.mark.parametrize(
    ("pil_format", "expected"),
    [("BMP", "bmp"), ("TIFF", "tiff"), ("ICO", "ico"), ("AVIF", "heif")],
)
def test_sniff_other_formats(pil_format: str, expected: str) -> None:
    assert sniff_image(image_bytes(pil_format)[:16]) == expected


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"<!doctype html>",
        b"<svg xmlns=",
        b"%PDF-1.7",
        b"RIFF\0\0\0\0WAVEfmt ",
        b"GIF8",
        b"\x89PNG\r\n",
    ],
)
def test_sniff_rejects_non_images(head: bytes) -> None:
    assert sniff_image(head) is None


# --- successful fetches ------------------------------------------------------------------------


@pytest.mark.parametrize("ext", ["jpg", "png", "gif", "webp"])
def test_fetches_images_in_memory(ext: str) -> None:
    result = fetch_one(f"/img.{ext}")
    assert result.error is None, result.detail
    assert result.status == 200
    assert result.content == IMAGES[ext]
    assert result.content_type == CONTENT_TYPES[ext]
    assert result.server_ip == "127.0.0.1"
    assert result.elapsed > 0


def test_content_is_sniffed_not_trusted() -> None:
    result = fetch_one("/wrong-type.png")
    assert result.error is None
    assert result.content == IMAGES["png"]
    assert result.content_type is not None and result.content_type.startswith("text/html")


def test_user_agent_is_sent() -> None:
    assert (
        fetch_one(
            "/ua", FetchConfig(timeout=2, user_agent="ArachneTest/9", allow_private=True)
        ).status
        == 200
    )
    assert fetch_one("/ua", FetchConfig(timeout=2, allow_private=True)).error == "http_403"


def test_redirects_are_followed() -> None:
    result = fetch_one("/redirect/3")
    assert result.error is None, result.detail
    assert result.status == 200
    assert result.content == IMAGES["gif"]
    assert result.server_ip == "127.0.0.1"


def test_kept_headers_only() -> None:
    result = fetch_one("/headers")
    assert result.error is None
    assert result.headers["via"] == "1.1 cache.test"
    assert result.headers["x-cache"] == "HIT"
    assert result.headers["cf-ray"] == "abc123-AMS"
    assert result.headers["x-served-by"] == "cache-ams1"
    assert result.headers["server"].startswith("Python/")  # aiohttp's default Server header
    assert set(result.headers) == {"via", "x-cache", "cf-ray", "x-served-by", "server"}


def test_body_at_exactly_max_bytes_is_kept() -> None:
    result = fetch_one(f"/sized/{MAX_BYTES}")
    assert result.error is None, result.detail
    assert len(result.content or b"") == MAX_BYTES
    result = fetch_one(f"/chunked/{MAX_BYTES}")
    assert result.error is None, result.detail
    assert len(result.content or b"") == MAX_BYTES


# --- failures become reasons -------------------------------------------------------------------


def test_html_served_as_image_is_not_an_image() -> None:
    result = fetch_one("/html-as-jpeg")
    assert result.status == 200
    assert result.error == "not_an_image"
    assert result.content is None
    assert "image/jpeg" in (result.detail or "")


@pytest.mark.parametrize(
    ("path", "status"), [("/missing", 404), ("/server-error", 503), ("/no-such-route", 404)]
)
def test_http_errors(path: str, status: int) -> None:
    result = fetch_one(path)
    assert result.status == status
    assert result.error == f"http_{status}"
    assert result.content is None
    assert result.server_ip == "127.0.0.1"


def test_too_large_with_content_length() -> None:
    result = fetch_one(f"/sized/{MAX_BYTES + 1}")
    assert result.error == "too_large"
    assert result.content is None
    assert (result.detail or "").startswith("Content-Length")


def test_too_large_without_content_length() -> None:
    result = fetch_one(f"/chunked/{MAX_BYTES * 50}")
    assert result.error == "too_large"
    assert result.content is None
    assert (result.detail or "").startswith("over")


def test_timeout_before_headers() -> None:
    result = fetch_one("/slow")
    assert result.error == "timeout"
    assert result.content is None
    assert 0.4 < result.elapsed < 2.5


def test_timeout_while_reading_body() -> None:
    result = fetch_one("/slow-body")
    assert result.error == "timeout"
    assert result.content is None
    assert result.elapsed < 2.5


def test_empty_body() -> None:
    result = fetch_one("/empty")
    assert result.status == 200
    assert result.error == "empty"
    assert result.content is None


def test_redirect_loop() -> None:
    result = fetch_one("/loop")
    assert result.error == "redirect_loop"
    assert result.content is None


def test_too_many_redirects_is_a_loop_too() -> None:
    assert fetch_one("/redirect/3").error is None
    assert fetch_one("/redirect/8").error == "redirect_loop"


def test_refused_connection() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more.
    (result,) = asyncio.run(fetch_many([f"http://127.0.0.1:{port}/img.png"], FAST))
    assert result.error == "connection_error"
    assert result.status is None
    assert result.content is None


def test_invalid_url_is_an_error_value() -> None:
    (result,) = asyncio.run(fetch_many(["not a url"], FAST))
    assert result.error is not None
    assert result.content is None


# --- many at once ------------------------------------------------------------------------------


def test_results_in_input_order() -> None:
    paths = ["/delay/150", "/missing", "/delay/10", "/img.webp", "/empty", "/delay/80"]
    results = fetch_paths(paths)
    assert [r.url.split(":", 2)[2].split("/", 1)[1] for r in results] == [
        p.lstrip("/") for p in paths
    ]
    assert [r.error for r in results] == [None, "http_404", None, None, "empty", None]
    assert results[3].content == IMAGES["webp"]


def test_per_host_concurrency_is_respected() -> None:
    counter = Concurrency()

    async def go() -> list[FetchResult]:
        async with serve(counter) as base:
            urls = [f"{base}/counted/{i}" for i in range(10)]
            return await fetch_many(urls, FetchConfig(timeout=5, per_host=2, allow_private=True))

    results = asyncio.run(go())
    assert all(r.error is None for r in results)
    assert counter.now == 0
    assert counter.peak == 2


def test_concurrency_is_used() -> None:
    counter = Concurrency()

    async def go() -> list[FetchResult]:
        async with serve(counter) as base:
            urls = [f"{base}/counted/{i}" for i in range(10)]
            return await fetch_many(urls, FetchConfig(timeout=5, per_host=5, allow_private=True))

    results = asyncio.run(go())
    assert all(r.error is None for r in results)
    assert counter.peak == 5


def test_empty_input() -> None:
    assert asyncio.run(fetch_many([], FAST)) == []
