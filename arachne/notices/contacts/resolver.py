"""The resolution chain: overrides -> DNS -> CDN -> RDAP for the IP network -> registrar.

Who is first: an operator override, else the CDN fronting the host, else the abuse desk of
the network holding the server IP, else the registrar. Everyone after the first is in
``escalation``, in order (the network after a CDN, the registrar last), and every step
taken is in ``chain``, so an operator can see why a notice went where it went.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime

from arachne.clock import iso_utc, utcnow
from arachne.errors import ConfigError
from arachne.notices.contacts import bootstrap as bootstrap_mod
from arachne.notices.contacts.cache import AnswerCache, MemoryCache, StoreCache
from arachne.notices.contacts.cdn import CdnList, CdnMatch
from arachne.notices.contacts.dns import DnsLookup
from arachne.notices.contacts.http import RdapHttp
from arachne.notices.contacts.model import (
    NO_CONTACT,
    ChainStep,
    Clock,
    Contact,
    ContactResolver,
)
from arachne.notices.contacts.names import is_ip, normalise_host, registrable_domain
from arachne.notices.contacts.overrides import OverridesResolver
from arachne.notices.contacts.rdap import Answer, RdapLookup
from arachne.settings import Settings
from arachne.store.db import Store

log = logging.getLogger(__name__)


class ChainResolver:
    """Asks each resolver in turn; the first contact with an email wins.

    When none has an email, the most informative empty answer is kept (a resolver may know
    the provider or CDN flag without an address), marked ``source="none"``. The steps of
    every resolver asked are kept, in order, in the returned contact's chain.
    """

    def __init__(self, resolvers: Iterable[ContactResolver]) -> None:
        self.resolvers = list(resolvers)

    def resolve(self, hostname: str, ip: str | None) -> Contact:
        fallback = NO_CONTACT
        steps: list[ChainStep] = []
        for resolver in self.resolvers:
            contact = resolver.resolve(hostname, ip)
            steps.extend(contact.chain)
            if contact.email:
                return replace(contact, chain=tuple(steps))
            if fallback is NO_CONTACT and (contact.provider or contact.is_cdn or contact.reason):
                fallback = replace(contact, source="none")
        return replace(fallback, chain=tuple(steps))


class AbuseContactResolver:
    def __init__(
        self,
        *,
        dns: DnsLookup,
        cdn: CdnList,
        rdap: RdapLookup,
        cache: AnswerCache,
        ttl: int,
        overrides: OverridesResolver | None = None,
        now: Clock | None = None,
        negative_ttl: int | None = None,
    ) -> None:
        self.dns = dns
        self.cdn = cdn
        self.rdap = rdap
        self.cache = cache
        self.ttl = ttl
        # An answer without an address is kept only until "no contact" is retried: the
        # registry may add an abuse contact, and the operator wants to know soon.
        self.negative_ttl = ttl if negative_ttl is None else min(ttl, negative_ttl)
        self.overrides = overrides
        self.now = now or utcnow

    def _step(self, source: str, query: str, outcome: str, detail: str | None = None) -> ChainStep:
        return ChainStep(source, query, outcome, detail, at=iso_utc(self.now()))

    def resolve(self, hostname: str, ip: str | None) -> Contact:
        host = normalise_host(hostname)
        recorded = normalise_host(ip) if ip else None
        if recorded is not None and not is_ip(recorded):
            recorded = None  # not an address: resolve the name instead
        if self.overrides is not None:
            contact = self.overrides.match(host, recorded)
            if contact is not None:
                return contact
        steps: list[ChainStep] = []
        addr, cnames = self._address(host, recorded, steps)
        if self.overrides is not None:
            if addr is not None and recorded is None:
                contact = self.overrides.match(host, addr)  # a CIDR override for the DNS answer
                if contact is not None:
                    return replace(contact, chain=(*steps, *contact.chain))
            steps.append(self.overrides.miss(host, addr))

        notes: list[str] = []  # why each stage gave no address, for a "no contact" reason
        if addr is None and steps and steps[0].source == "dns":
            notes.append(_note("dns", None, steps[:1]))
        cdn = self.cdn.match(addr, cnames)
        network: Answer | None = None
        if cdn is not None:
            steps.append(self._step("cdn", cdn.matched, "ok", self._cdn_detail(cdn)))
        if cdn is not None and cdn.via == "range":
            why = f"{addr} is in {cdn.provider.name}'s range: no RDAP needed for the CDN"
            steps.append(self._step("rdap-ip", addr or host, "skipped", why))
        elif addr is not None:
            mark = len(steps)
            network = self._lookup("ip", addr, steps)
            notes.append(_note("network", network, steps[mark:]))
        else:
            steps.append(self._step("rdap-ip", host, "skipped", "no address to look up"))

        domain = registrable_domain(host)
        registrar: Answer | None = None
        if domain is not None:
            mark = len(steps)
            registrar = self._lookup("domain", domain, steps)
            notes.append(_note("registrar", registrar, steps[mark:]))
        else:
            why = "an IP literal has no registrar" if is_ip(host) else "not a registered name"
            steps.append(self._step("rdap-domain", host, "skipped", why))
            notes.append(f"registrar: {why}")
        return self._assemble(cdn, network, registrar, steps, notes)

    def _address(
        self, host: str, recorded: str | None, steps: list[ChainStep]
    ) -> tuple[str | None, tuple[str, ...]]:
        """The server IP (recorded, else from DNS) and the host's CNAME chain."""
        if is_ip(host):
            return recorded or host, ()
        answer = self.dns.lookup(host)  # also when the IP is known: CNAMEs reveal a CDN
        parts = [", ".join(answer.addresses)] if answer.addresses else []
        if answer.cnames:
            parts.append("via CNAME " + " -> ".join(answer.cnames))
        if answer.detail:
            parts.append(answer.detail)
        if recorded is not None:
            parts.append(f"using the server IP recorded by the worker: {recorded}")
        steps.append(self._step("dns", host, answer.outcome, "; ".join(parts) or None))
        if recorded is not None:
            return recorded, answer.cnames
        return (answer.addresses[0] if answer.addresses else None), answer.cnames

    def _cdn_detail(self, cdn: CdnMatch) -> str:
        how = "address range" if cdn.via == "range" else "CNAME suffix"
        return f"{cdn.provider.name} by {how} (CDN list of {self.cdn.date})"

    def _lookup(self, kind: str, key: str, steps: list[ChainStep]) -> Answer | None:
        now = self.now()
        cached = self.cache.get_ip(key, now) if kind == "ip" else self.cache.get_domain(key, now)
        if cached is not None:
            a = cached.answer
            who = f"{a.key} ({a.provider})" if a.provider else a.key
            detail = f"{who} from {a.url}, fetched {iso_utc(cached.fetched_at)}: {a.outcome}"
            steps.append(ChainStep("cache", key, "ok", detail, a.entity, iso_utc(now)))
            return a
        source = "rdap-ip" if kind == "ip" else "rdap-domain"
        try:
            answer, new = self.rdap.ip(key) if kind == "ip" else self.rdap.domain(key)
        except ConfigError:
            raise  # a broken bootstrap setting is the operator's to fix, not a host's fate
        except Exception as exc:  # a hostile answer must cost one host's contact, not a send
            log.exception("RDAP lookup of %s failed", key)
            steps.append(self._step(source, key, "error", f"{type(exc).__name__}: {exc}"))
            return None
        steps.extend(new)
        if answer is not None:
            self.cache.put(answer, now, self.ttl if answer.email else self.negative_ttl)
        return answer

    def _assemble(
        self,
        cdn: CdnMatch | None,
        network: Answer | None,
        registrar: Answer | None,
        steps: list[ChainStep],
        notes: list[str],
    ) -> Contact:
        candidates: list[Contact] = []
        if cdn is not None:
            p = cdn.provider
            net = cdn.matched if cdn.via == "range" else None
            candidates.append(Contact(p.abuse, "cdn", p.name, True, network=net, cdn=p.key))
        if network is not None and network.email:
            candidates.append(
                Contact(
                    network.email,
                    "rdap",
                    network.provider,
                    country=network.country,
                    network=network.key,
                )
            )
        if network is not None and network.upstream_email:
            candidates.append(
                Contact(network.upstream_email, "upstream", network.upstream_provider)
            )
        if registrar is not None and registrar.email:
            candidates.append(Contact(registrar.email, "registrar", registrar.provider))
        unique: list[Contact] = []
        for contact in candidates:
            if all(c.email != contact.email for c in unique):
                unique.append(contact)
        if unique:
            first = unique[0]
            if first.source in ("upstream", "registrar") and network is not None:
                # Someone else answers for the network, but the content is still on it:
                # its holder and country stay the host's (for the notice and the figures).
                first = replace(
                    first,
                    provider=network.provider or first.provider,
                    country=network.country,
                    network=network.key,
                )
            return replace(first, escalation=tuple(unique[1:]), chain=tuple(steps))
        return Contact(
            None,
            "none",
            provider=network.provider if network else None,
            country=network.country if network else None,
            network=network.key if network else None,
            chain=tuple(steps),
            reason="no abuse contact found: "
            + ("; ".join(n for n in notes if n) or "nothing to look up"),
        )


def _note(stage: str, answer: Answer | None, steps: list[ChainStep]) -> str:
    """One stage's part of the reason: the answer's outcome, else its last failed step."""
    if answer is not None:
        if answer.email:
            return ""
        detail = f" ({answer.detail})" if answer.detail else ""
        return f"{stage} {answer.key}: {answer.outcome}{detail}"
    last = next((s for s in reversed(steps) if s.outcome not in ("ok", "redirected")), None)
    if last is None:
        return f"{stage}: no answer"
    detail = f" ({last.detail})" if last.detail else ""
    return f"{stage} {last.query}: {last.outcome}{detail}"


def default_resolver(
    settings: Settings,
    store: Store | None = None,
    *,
    now: Callable[[], datetime] | None = None,
) -> AbuseContactResolver:
    """Overrides file (if any), then CDN detection, DNS -> IP -> RDAP, then the registrar.

    With ``store`` the RDAP cache is the ``contact_cache`` table; without, in memory.
    Raises ConfigError for a bad contacts file or DNS server list (nothing is fetched yet).
    """
    clock = now or utcnow
    overrides = (
        OverridesResolver(settings.contacts_file, now=clock) if settings.contacts_file else None
    )
    http = RdapHttp.from_settings(settings)
    where, kind = bootstrap_mod.location(settings)
    loaded: list[bootstrap_mod.Bootstrap] = []

    def get_bootstrap() -> bootstrap_mod.Bootstrap:
        if not loaded:
            loaded.append(bootstrap_mod.load(where, kind, http.get))
        return loaded[0]

    rdap = RdapLookup(http, get_bootstrap, allow_private=settings.allow_private_networks, now=clock)
    cache: AnswerCache = StoreCache(store) if store is not None else MemoryCache()
    return AbuseContactResolver(
        dns=DnsLookup(settings.dns_servers, settings.dns_timeout),
        cdn=CdnList.load(),
        rdap=rdap,
        cache=cache,
        ttl=settings.rdap_cache_ttl,
        overrides=overrides,
        now=clock,
        negative_ttl=settings.contact_retry_after,
    )
