"""Host name -> addresses and the CNAME chain, with dnspython and operator-chosen servers.

Every failure (NXDOMAIN, SERVFAIL, timeout, a CNAME loop) is an outcome, never an exception:
the resolver records it in the chain and carries on with what it has.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from arachne.errors import ConfigError

MAX_CNAMES = 8  # longer chains are not worth following to find a hosting provider


@dataclass(frozen=True)
class DnsAnswer:
    name: str
    outcome: str  # ok | nxdomain | servfail | timeout | no_answer | cname_loop | error
    addresses: tuple[str, ...] = ()
    cnames: tuple[str, ...] = ()  # canonical names in the order they were followed
    detail: str | None = None


def parse_servers(text: str) -> list[tuple[str, int]]:
    """``"127.0.0.1:5353,[::1]:53,192.0.2.53"`` -> ``[(ip, port), ...]`` (port 53 default)."""
    servers: list[tuple[str, int]] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        host, port = item, "53"
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port = rest.lstrip(":") or "53"
        elif item.count(":") == 1:
            host, port = item.split(":")
        try:
            ipaddress.ip_address(host)
            number = int(port)
            if not 0 < number < 65536:
                raise ValueError(port)
        except ValueError:
            raise ConfigError(
                f"dns_servers: {item!r} is not an address like 192.0.2.53:53"
            ) from None
        servers.append((host, number))
    if not servers:
        raise ConfigError("dns_servers: no server given (unset it for the system resolver)")
    return servers


class DnsLookup:
    """A/AAAA lookups that keep the CNAME chain (Akamai is recognised by it)."""

    def __init__(self, servers: str | None = None, timeout: float = 5.0) -> None:
        self.servers = parse_servers(servers) if servers else None
        self.timeout = timeout
        self._resolver: dns.resolver.Resolver | None = None

    def _get_resolver(self) -> dns.resolver.Resolver:
        if self._resolver is None:
            if self.servers is None:
                resolver = dns.resolver.Resolver()  # /etc/resolv.conf
            else:
                resolver = dns.resolver.Resolver(configure=False)
                resolver.nameservers = [
                    dns.nameserver.Do53Nameserver(host, port) for host, port in self.servers
                ]
            resolver.timeout = resolver.lifetime = self.timeout
            resolver.cache = None  # the contact cache is per network range, not per name
            self._resolver = resolver
        return self._resolver

    def lookup(self, name: str) -> DnsAnswer:
        """Follow CNAMEs (bounded, loops detected) to the A records, else the AAAA records."""
        try:
            resolver = self._get_resolver()
        except dns.exception.DNSException as exc:
            return DnsAnswer(name, "error", detail=f"no DNS resolver: {exc}")
        qname = name
        cnames: list[str] = []
        seen = {name.lower()}
        while True:
            found, canonical, outcome, detail = self._query(resolver, qname, cnames)
            if outcome is not None:
                return DnsAnswer(name, outcome, cnames=tuple(cnames), detail=detail)
            if found:
                return DnsAnswer(name, "ok", tuple(found), tuple(cnames))
            if canonical is None or canonical == qname:
                return DnsAnswer(name, "no_answer", cnames=tuple(cnames), detail="no A/AAAA")
            # The server handed back a CNAME without its target's records: ask for the target.
            if canonical.lower() in seen:
                return DnsAnswer(name, "cname_loop", cnames=tuple(cnames), detail=canonical)
            if len(cnames) >= MAX_CNAMES:
                return DnsAnswer(name, "cname_loop", cnames=tuple(cnames), detail="too long")
            seen.add(canonical.lower())
            qname = canonical

    def _query(
        self, resolver: dns.resolver.Resolver, qname: str, cnames: list[str]
    ) -> tuple[list[str], str | None, str | None, str | None]:
        """(addresses, canonical name, failure outcome, detail) for one name."""
        canonical: str | None = None
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            try:
                answer = resolver.resolve(qname, rdtype, raise_on_no_answer=False, search=False)
            except dns.resolver.NXDOMAIN:
                return [], None, "nxdomain", qname
            except dns.resolver.NoNameservers as exc:
                # dnspython reports a looping chain in a server's answer as that server failing
                errors = exc.kwargs.get("errors") or []
                if any(isinstance(e[3], dns.message.ChainTooLong) for e in errors):
                    return [], None, "cname_loop", f"{qname}: CNAME chain loops"
                return [], None, "servfail", _short(exc)
            except dns.exception.Timeout:
                return [], None, "timeout", f"no answer within {self.timeout:g} s"
            except dns.message.ChainTooLong:
                return [], None, "cname_loop", qname
            except dns.exception.DNSException as exc:
                return [], None, "error", _short(exc)
            for rrset in answer.chaining_result.cnames:
                target = _text(rrset[0].target)
                if target not in cnames:
                    cnames.append(target)
            canonical = _text(answer.canonical_name)
            if answer.rrset is not None:
                return [r.address for r in answer.rrset], canonical, None, None
            if canonical != qname:
                break  # a dangling CNAME: the caller follows it
        return [], canonical, None, None


def _text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200]
