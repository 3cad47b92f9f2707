"""Pages get the SSRF guard images have: every hop, redirects included, must be public.

Each crawl runs in a subprocess (``tests.crawl_probe``) against real loopback servers. The
address rule is injectable, so one loopback address can stand in for "public" and another
for "private": a page on 127.0.0.2 redirects to 127.0.0.3 and to ``localhost``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.conftest import REDIS_TEST_URL
from tests.crawl_probe import run_probe


class _Server:
    """A loopback HTTP server that records the paths asked for; ``/go?to=URL`` redirects."""

    def __init__(self, host: str) -> None:
        self.hits: list[str] = []
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                hits.append(self.path)
                if self.path.startswith("/go?to="):
                    self.send_response(302)
                    self.send_header("Location", self.path.removeprefix("/go?to="))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = b"<html><body>hello</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.base = f"http://{host}:{self.httpd.server_address[1]}"


@contextmanager
def servers(*hosts: str) -> Iterator[list[_Server]]:
    started = [_Server(h) for h in hosts]
    threads = [threading.Thread(target=s.httpd.serve_forever, daemon=True) for s in started]
    for t in threads:
        t.start()
    try:
        yield started
    finally:
        for s in started:
            s.httpd.shutdown()
            s.httpd.server_close()


probe = run_probe


def test_redirect_hops_to_refused_addresses_are_not_requested() -> None:
    with servers("127.0.0.2", "127.0.0.3", "127.0.0.1") as (public, private, loopback):
        port = loopback.httpd.server_address[1]
        seeds = [
            f"{public.base}/ok",
            f"{public.base}/go?to={private.base}/secret",  # a refused literal
            f"{public.base}/go?to=http://localhost:{port}/secret",  # a name resolving to one
        ]
        stats, log = probe("rule", {"allowed": ["127.0.0.2"], "seeds": seeds})
    assert sorted(public.hits) == sorted(s.removeprefix(public.base) for s in seeds)
    assert private.hits == [] and loopback.hits == [], "refused hops were never requested"
    assert stats["arachne/page_blocked"] == 2
    assert stats["probe/parsed"] == 1
    assert "127.0.0.3 is not a public address" in log
    assert "localhost resolves to non-public address 127.0.0.1" in log
    assert "Traceback" not in log


def test_the_production_rule_refuses_a_loopback_seed_and_counts_it(tmp_path: Path) -> None:
    with servers("127.0.0.1") as (site,):
        args = {
            "data_dir": str(tmp_path),
            "redis_url": REDIS_TEST_URL,
            "seeds": [f"{site.base}/"],
            "settings": {},
        }
        stats, log = probe("arachne", args)
        assert site.hits == [], "not even robots.txt was asked for"
        assert stats["arachne/page_blocked"] == 1
        assert "arachne/page_errors" not in stats, "a refused page is counted once"
        assert "127.0.0.1 is not a public address" in log and "Traceback" not in log

        # allow_private_networks (tests, the demo) turns the guard off.
        args["settings"] = {"allow_private_networks": True}
        stats, _ = probe("arachne", args)
        assert "/" in site.hits and "arachne/page_blocked" not in stats
