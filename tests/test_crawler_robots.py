"""robots.txt per campaign: obey (the default), record (crawl, but count what it disallows),
ignore. Real crawls through ``run_crawl`` in a subprocess, against a loopback site."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from arachne.crawler.scope import Scope
from tests.conftest import REDIS_TEST_URL
from tests.crawl_probe import run_probe

PAGES = {
    "/robots.txt": ("text/plain", b"User-agent: *\nDisallow: /private/\n"),
    "/": ("text/html", b'<a href="/open.html">open</a> <a href="/private/p.html">private</a>'),
    "/open.html": ("text/html", b"<p>open</p>"),
    "/private/p.html": ("text/html", b"<p>private</p>"),
}


@contextmanager
def site() -> Iterator[tuple[str, list[str]]]:
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            hits.append(self.path)
            ctype, body = PAGES.get(self.path, ("text/plain", b"not found"))
            self.send_response(200 if self.path in PAGES else 404)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    finally:
        httpd.shutdown()


def crawl(tmp_path: Path, base: str, robots: str) -> dict[str, Any]:
    args = {
        "data_dir": str(tmp_path),
        "redis_url": REDIS_TEST_URL,
        "seeds": [base + "/"],
        "settings": {"allow_private_networks": True},
        "robots": robots,
    }
    return run_probe("arachne", args)[0]


@pytest.mark.parametrize(
    ("robots", "private_fetched", "forbidden", "recorded"),
    # record: Scrapy counts what robots.txt forbids, Arachne that it crawled it anyway
    [("obey", False, 1, 0), ("record", True, 1, 1), ("ignore", True, 0, 0)],
)
def test_robots_policy(
    tmp_path: Path,
    redis_url: str,
    robots: str,
    private_fetched: bool,
    forbidden: int,
    recorded: int,
) -> None:
    with site() as (base, hits):
        stats = crawl(tmp_path, base, robots)
    assert "/open.html" in hits
    assert ("/private/p.html" in hits) is private_fetched
    assert stats.get("robotstxt/forbidden", 0) == forbidden
    assert stats.get("arachne/robots/disallowed_crawled", 0) == recorded


def test_robots_policy_is_kept_with_the_campaign() -> None:
    scope = Scope.for_seeds(["https://a.example/"], robots="record")
    assert Scope.from_json(scope.as_json()).robots == "record"
    assert Scope.from_json({"allowed_hosts": ["a.example"]}).robots == "obey"  # older rows
    with pytest.raises(ValueError, match="robots policy"):
        Scope.for_seeds(["https://a.example/"], robots="sometimes")
