"""By default workers refuse image URLs on loopback/private addresses (SSRF guard)."""

from __future__ import annotations

import asyncio

import pytest

from arachne.queue.fetch import FetchConfig, fetch_many, is_public
from tests.imageserver import make_image, serve

ROUTES = {"/a.png": (200, "image/png", make_image(1, fmt="PNG"))}


@pytest.mark.parametrize(
    ("ip", "public"),
    [
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata services
        ("100.64.0.1", False),  # carrier-grade NAT
        ("::1", False),
        ("fd00::1", False),
        ("::ffff:10.0.0.1", False),  # IPv4-mapped private address
        ("224.0.0.1", False),
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
    ],
)
def test_is_public(ip: str, public: bool) -> None:
    assert is_public(ip) is public


def test_loopback_urls_are_refused_unless_allowed() -> None:
    with serve(ROUTES) as base:
        by_ip = base + "/a.png"
        by_name = by_ip.replace("127.0.0.1", "localhost")
        blocked = asyncio.run(fetch_many([by_ip, by_name], FetchConfig(timeout=5)))
        allowed = asyncio.run(fetch_many([by_ip], FetchConfig(timeout=5, allow_private=True)))
    assert [r.error for r in blocked] == ["blocked_address", "blocked_address"]
    assert all(r.content is None and r.status is None for r in blocked), "nothing was requested"
    assert allowed[0].error is None and allowed[0].content


def test_every_hop_is_checked_so_redirects_cannot_reach_private_addresses() -> None:
    # aiohttp fires on_request_start for each redirect hop; the hook refuses literal
    # private targets (names are refused by the resolver). No public first hop exists
    # offline, so the hook is exercised directly with a redirect target's parameters.
    from aiohttp import TraceRequestStartParams
    from multidict import CIMultiDict
    from yarl import URL

    from arachne.queue.fetch import BlockedAddress, _refuse_private_literals

    def params(url: str) -> TraceRequestStartParams:
        return TraceRequestStartParams("GET", URL(url), CIMultiDict())

    with pytest.raises(BlockedAddress):
        asyncio.run(_refuse_private_literals(None, None, params("http://169.254.169.254/x")))
    with pytest.raises(BlockedAddress):
        asyncio.run(_refuse_private_literals(None, None, params("http://[::1]:8080/x")))
    # Public literals and names pass the hook.
    asyncio.run(_refuse_private_literals(None, None, params("http://93.184.216.34/x")))
    asyncio.run(_refuse_private_literals(None, None, params("http://images.example/x")))
