"""A small RDAP server on loopback, standing in for the registries in tests and the demo.

Serves ``/ip/{address or CIDR}`` (longest prefix over its networks), ``/domain/{name}``,
``/entity/{handle}`` and ``/files/{name}`` (e.g. bootstrap files) from documents it is
given; counts hits per path; and misbehaves on
request, per path prefix, for a number of requests or for good (``fault``): 429 with
Retry-After, 500, slow answers, malformed or huge JSON, redirect loops, redirects to a
private address or to another server.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from arachne.demo.background import ServerThread

RDAP_JSON = "application/rdap+json"
FAULTS = (
    "429",
    "500",
    "slow",
    "malformed",
    "huge",
    "redirect_loop",
    "redirect_private",
    "redirect",
)


@dataclass
class Fault:
    kind: str
    times: int | None = None  # None: every matching request
    retry_after: str = "1"  # for 429
    delay: float = 5.0  # for slow
    size: int = 4 * 1024 * 1024  # for huge
    streamed: bool = True  # huge without Content-Length: only a capped read stops it
    location: str = ""  # for redirect


@dataclass
class RdapData:
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)  # CIDR -> answer
    domains: dict[str, dict[str, Any]] = field(default_factory=dict)
    entities: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # /files/{name}: any JSON


DATA = web.AppKey("data", RdapData)
SERVER = web.AppKey("server", "RdapServer")


def error_doc(code: int, title: str) -> dict[str, Any]:
    return {"rdapConformance": ["rdap_level_0"], "errorCode": code, "title": title}


def _json(doc: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(doc), status=status, content_type=RDAP_JSON)


def find_network(networks: dict[str, dict[str, Any]], query: str) -> dict[str, Any] | None:
    try:
        target = ipaddress.ip_network(query, strict=False)
    except ValueError:
        return None
    holding = [
        (net.prefixlen, doc)
        for net, doc in ((ipaddress.ip_network(c, strict=False), d) for c, d in networks.items())
        if net.version == target.version and target.subnet_of(net)  # type: ignore[arg-type]
    ]
    return max(holding, key=lambda pd: pd[0])[1] if holding else None


@web.middleware
async def misbehave(request: web.Request, handler: Any) -> web.StreamResponse:
    server = request.app[SERVER]
    server.hits[request.path] += 1
    fault = server.take_fault(request.path)
    if fault is None:
        return await handler(request)
    if fault.kind == "429":
        return web.Response(status=429, headers={"Retry-After": fault.retry_after})
    if fault.kind == "500":
        return _json(error_doc(500, "Internal Server Error"), status=500)
    if fault.kind == "slow":
        await asyncio.sleep(fault.delay)
        return await handler(request)
    if fault.kind == "malformed":
        truncated = '{"objectClassName": "ip network", "handle": '
        return web.Response(text=truncated, content_type=RDAP_JSON)
    if fault.kind == "huge":
        body = json.dumps({"remarks": [{"description": ["x" * fault.size]}]}).encode()
        if not fault.streamed:
            return web.Response(body=body, content_type=RDAP_JSON)
        resp = web.StreamResponse(headers={"Content-Type": RDAP_JSON})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(body), 16 * 1024):
            await resp.write(body[i : i + 16 * 1024])
        await resp.write_eof()
        return resp
    if fault.kind == "redirect_loop":
        raise web.HTTPFound("/loop/a")  # which redirects to /loop/b, which redirects back
    if fault.kind == "redirect_private":
        raise web.HTTPFound(f"http://10.0.0.1/{request.path.lstrip('/')}")
    if fault.kind == "redirect":
        raise web.HTTPFound(fault.location.rstrip("/") + request.path)
    raise AssertionError(f"unknown fault {fault.kind}")


async def ip_network(request: web.Request) -> web.Response:
    doc = find_network(request.app[DATA].networks, request.match_info["query"])
    return _json(doc) if doc else _json(error_doc(404, "Not Found"), status=404)


async def domain(request: web.Request) -> web.Response:
    doc = request.app[DATA].domains.get(request.match_info["name"].lower().rstrip("."))
    return _json(doc) if doc else _json(error_doc(404, "Not Found"), status=404)


async def entity(request: web.Request) -> web.Response:
    doc = request.app[DATA].entities.get(request.match_info["handle"])
    return _json(doc) if doc else _json(error_doc(404, "Not Found"), status=404)


async def file(request: web.Request) -> web.Response:
    doc = request.app[DATA].files.get(request.match_info["name"])
    if doc is None:
        raise web.HTTPNotFound()
    return web.json_response(doc)


async def loop(request: web.Request) -> web.Response:
    raise web.HTTPFound("/loop/b" if request.match_info["step"] == "a" else "/loop/a")


def create_app(server: RdapServer) -> web.Application:
    app = web.Application(middlewares=[misbehave])
    app[DATA] = server.data
    app[SERVER] = server
    app.router.add_get("/ip/{query:.+}", ip_network, name="ip")
    app.router.add_get("/domain/{name}", domain, name="domain")
    app.router.add_get("/entity/{handle}", entity, name="entity")
    app.router.add_get("/loop/{step}", loop, name="loop")
    app.router.add_get("/files/{name}", file, name="file")
    return app


class RdapServer:
    """Async API: ``await server.start()`` … ``await server.stop()``; ``url`` ends in ``/``."""

    def __init__(self, data: RdapData | None = None, host: str = "127.0.0.1") -> None:
        self.data = data or RdapData()
        self.host = host
        self.hits: Counter[str] = Counter()
        self.faults: dict[str, Fault] = {}
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._lock = threading.Lock()

    def fault(self, prefix: str, kind: str, **options: Any) -> None:
        """Misbehave on paths starting with ``prefix`` (e.g. ``/ip/`` or ``/domain/x``)."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r} (one of {FAULTS})")
        with self._lock:
            self.faults[prefix] = Fault(kind, **options)

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def take_fault(self, path: str) -> Fault | None:
        with self._lock:
            prefix = max((p for p in self.faults if path.startswith(p)), key=len, default=None)
            if prefix is None:
                return None
            fault = self.faults[prefix]
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    del self.faults[prefix]
            return fault

    async def start(self) -> str:
        self._runner = web.AppRunner(create_app(self), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{self.host}:{port}/"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class RdapServerThread(ServerThread[RdapServer]):
    """For synchronous callers: ``with RdapServerThread(data) as server: server.url``."""

    def __init__(self, data: RdapData | None = None, host: str = "127.0.0.1") -> None:
        self.server = RdapServer(data, host)
        super().__init__(self._started, self.server.stop, "demo-rdap")

    async def _started(self) -> RdapServer:
        await self.server.start()
        return self.server


def write_bootstrap(
    folder: Path,
    url: str,
    *,
    ipv4: list[str] | None = None,
    ipv6: list[str] | None = None,
    tlds: list[str] | None = None,
) -> Path:
    """A bootstrap folder (ipv4.json, ipv6.json, dns.json) sending the given ranges and TLDs
    to ``url``; defaults: all of 127.0.0.0/8, ::1 and the .test and .example TLDs."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = {
        "ipv4": ["127.0.0.0/8"] if ipv4 is None else ipv4,
        "ipv6": ["::1/128"] if ipv6 is None else ipv6,
        "dns": ["test", "example"] if tlds is None else tlds,
    }
    for name, keys in entries.items():
        doc = {
            "description": f"Local RDAP bootstrap ({name}) for tests and the demo",
            "publication": "2026-12-01T00:00:00Z",
            "services": [[keys, [url]]] if keys else [],
            "version": "1.0",
        }
        (folder / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
    return folder
