"""A real DNS server on 127.0.0.1 (UDP and TCP, one free port) with records a test sets.

``records`` maps a name to a list of ``("A" | "AAAA" | "CNAME", value)``; names in
``nxdomain`` (or not listed) answer NXDOMAIN, names in ``servfail`` answer SERVFAIL. Like a
recursive server, the answer carries the whole CNAME chain (each link once, so a loop comes
back as a loop) unless ``follow_cnames`` is false, when only the first CNAME is given.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dnslib import AAAA, CNAME, QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

Records = dict[str, list[tuple[str, str]]]


class _Resolver(BaseResolver):
    def __init__(self, server: LocalDns) -> None:
        self.server = server

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        self.server.queries[qname] += 1
        if qname in self.server.servfail:
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        name, seen = qname, set()
        while True:
            records = self.server.records.get(name)
            if records is None or name in self.server.nxdomain:
                if name == qname:
                    reply.header.rcode = RCODE.NXDOMAIN
                return reply
            cname = next((v for t, v in records if t == "CNAME"), None)
            if cname is not None and qtype != "CNAME":
                reply.add_answer(RR(name, QTYPE.CNAME, rdata=CNAME(cname), ttl=60))
                seen.add(name)
                name = cname.rstrip(".").lower()
                if name in seen or not self.server.follow_cnames:
                    return reply
                continue
            for rtype, value in records:
                if rtype == qtype == "A":
                    reply.add_answer(RR(name, QTYPE.A, rdata=A(value), ttl=60))
                elif rtype == qtype == "AAAA":
                    reply.add_answer(RR(name, QTYPE.AAAA, rdata=AAAA(value), ttl=60))
            return reply


class LocalDns:
    def __init__(self, records: Records | None = None) -> None:
        self.records: Records = {k.lower(): v for k, v in (records or {}).items()}
        self.nxdomain: set[str] = set()
        self.servfail: set[str] = set()
        self.follow_cnames = True
        self.queries: Counter[str] = Counter()
        self.port = 0
        self._servers: list[DNSServer] = []

    @property
    def address(self) -> str:
        """For ``Settings(dns_servers=...)``."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> LocalDns:
        logger = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data")
        for _ in range(20):
            udp = DNSServer(_Resolver(self), port=0, address="127.0.0.1", logger=logger)
            port = udp.server.server_address[1]
            try:
                tcp = DNSServer(
                    _Resolver(self), port=port, address="127.0.0.1", tcp=True, logger=logger
                )
            except OSError:
                udp.server.server_close()
                continue
            self._servers = [udp, tcp]
            self.port = port
            for server in self._servers:
                server.start_thread()
            return self
        raise OSError("no free port for both UDP and TCP")

    def stop(self) -> None:
        for server in self._servers:
            server.stop()
            server.server.server_close()
        self._servers = []


@contextmanager
def local_dns(records: Records | None = None) -> Iterator[LocalDns]:
    server = LocalDns(records).start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def silent_dns() -> Iterator[str]:
    """A bound UDP port that never answers: a DNS server that times out."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()
