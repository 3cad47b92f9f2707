"""RDAP lookups: bootstrap -> registry -> (referrals) -> the abuse contact of a network or
of a domain's registrar. Each lookup returns its answer and the chain steps it took.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote

from arachne.clock import iso_utc, utcnow
from arachne.notices.contacts import entities
from arachne.notices.contacts.bootstrap import Bootstrap
from arachne.notices.contacts.http import Fetched, RdapHttp
from arachne.notices.contacts.model import ChainStep, Clock
from arachne.queue.fetch import is_public

MAX_REFERRALS = 3


@dataclass(frozen=True)
class Answer:
    """What one RDAP lookup established; cached per network range (or domain)."""

    kind: str  # ip | domain
    key: str  # the network (CIDR or "start - end") or the domain
    outcome: str  # ok | no_abuse_entity | no_email | placeholder | no_registrar
    url: str  # the answer the finding came from
    email: str | None = None
    entity: str | None = None
    provider: str | None = None  # network holder, or registrar name
    country: str | None = None
    start: str | None = None  # first and last address of the network
    end: str | None = None
    detail: str | None = None
    # The network above (a less specific answer, or the one the ``up`` link names), when
    # it has another abuse address: the upstream an escalation goes to.
    upstream_email: str | None = None
    upstream_provider: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Answer:
        fields = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in fields})


class RdapLookup:
    def __init__(
        self,
        http: RdapHttp,
        bootstrap: Callable[[], Bootstrap],
        *,
        allow_private: bool = False,
        now: Clock | None = None,
        max_referrals: int = MAX_REFERRALS,
    ) -> None:
        self.http = http
        self.bootstrap = bootstrap  # loaded on first use: building a resolver asks nothing
        self.allow_private = allow_private
        self.now = now or utcnow
        self.max_referrals = max_referrals

    def _step(
        self,
        source: str,
        query: str,
        outcome: str,
        detail: str | None = None,
        entity: str | None = None,
    ) -> ChainStep:
        return ChainStep(source, query, outcome, detail, entity, iso_utc(self.now()))

    def ip(self, ip: str) -> tuple[Answer | None, list[ChainStep]]:
        """The abuse contact of the RDAP network holding ``ip``."""
        if not self.allow_private and not is_public(ip):
            why = "private or reserved address: not looked up"
            return None, [self._step("rdap-ip", ip, "skipped", why)]
        bootstrap = self.bootstrap()
        hit = bootstrap.ip_base(ip)
        if hit is None:
            why = f"no registry for this address in the bootstrap ({bootstrap.info.source})"
            return None, [self._step("bootstrap", ip, "no_registry", why)]
        prefix, base = hit
        steps = [self._step("bootstrap", ip, "ok", f"{prefix} -> {base}")]
        docs = self._fetch_chain(f"{base}ip/{quote(ip)}", "rdap-ip", "/ip/", steps)
        chosen: tuple[str, dict[str, Any], entities.Finding] | None = None
        for url, doc in reversed(docs):  # the most specific answer first
            finding = entities.find_abuse(doc)
            span = entities.network_range(doc)
            where = f"network {span[2]}" if span else "network without a range"
            detail = f"{where}: {finding.detail}" if finding.detail else where
            steps.append(self._step("rdap-ip", url, finding.outcome, detail, finding.entity))
            if chosen is None or (finding.outcome == "ok" and chosen[2].outcome != "ok"):
                chosen = (url, doc, finding)
            if finding.outcome == "ok":
                break
        if chosen is None:
            return None, steps
        url, doc, finding = chosen
        span = entities.network_range(doc)
        upstream = self._upstream(docs, url, doc, finding, steps)
        answer = Answer(
            kind="ip",
            key=span[2] if span else ip,
            outcome=finding.outcome,
            url=url,
            email=finding.email,
            entity=finding.entity,
            provider=entities.provider_of(doc),
            country=entities.network_country(doc),
            start=span[0] if span else None,
            end=span[1] if span else None,
            detail=finding.detail,
            upstream_email=upstream[0] if upstream else None,
            upstream_provider=upstream[1] if upstream else None,
        )
        return answer, steps

    def _upstream(
        self,
        docs: list[tuple[str, dict[str, Any]]],
        url: str,
        doc: dict[str, Any],
        finding: entities.Finding,
        steps: list[ChainStep],
    ) -> tuple[str, str | None] | None:
        """The abuse contact one level up: a less specific answer of the referral chain
        with another address (a registry's allocation to the ISP that reassigned the
        block), else the network named by the answer's ``up`` link (one fetch). A
        customer's own abuse address may be the offender's; its upstream is not."""
        for other_url, other in docs:
            if other_url == url:
                continue
            above = entities.find_abuse(other)
            if above.outcome == "ok" and above.email and above.email != finding.email:
                steps.append(self._step("rdap-up", other_url, "ok", "upstream", above.entity))
                return above.email, entities.provider_of(other)
        up = _link(doc, "up", "/ip/")
        if up is None or up == url:
            return None
        got = self.http.get(up)
        if got.doc is None:
            steps.append(self._step("rdap-up", up, got.outcome, _fetch_detail(got)))
            return None
        above = entities.find_abuse(got.doc)
        steps.append(self._step("rdap-up", up, above.outcome, above.detail, above.entity))
        if above.outcome == "ok" and above.email and above.email != finding.email:
            return above.email, entities.provider_of(got.doc)
        return None

    def domain(self, name: str) -> tuple[Answer | None, list[ChainStep]]:
        """The registrar's abuse contact for the registered domain ``name``."""
        bootstrap = self.bootstrap()
        hit = bootstrap.domain_base(name)
        if hit is None:
            why = f"no RDAP server for this TLD in the bootstrap ({bootstrap.info.source})"
            return None, [self._step("bootstrap", name, "no_registry", why)]
        suffix, base = hit
        steps = [self._step("bootstrap", name, "ok", f".{suffix} -> {base}")]
        docs = self._fetch_chain(f"{base}domain/{quote(name)}", "rdap-domain", "/domain/", steps)
        chosen: tuple[str, entities.Finding, str | None] | None = None
        for url, doc in reversed(docs):
            finding, registrar = entities.find_registrar(doc)
            detail = f"registrar {registrar}" if registrar else None
            if finding.detail:
                detail = f"{detail}: {finding.detail}" if detail else finding.detail
            steps.append(self._step("rdap-domain", url, finding.outcome, detail, finding.entity))
            if chosen is None or (finding.outcome == "ok" and chosen[1].outcome != "ok"):
                chosen = (url, finding, registrar)
            if finding.outcome == "ok":
                break
        if chosen is None:
            return None, steps
        url, finding, registrar = chosen
        answer = Answer(
            kind="domain",
            key=name,
            outcome=finding.outcome,
            url=url,
            email=finding.email,
            entity=finding.entity,
            provider=registrar,
            detail=finding.detail,
        )
        return answer, steps

    def _fetch_chain(
        self, url: str, source: str, path_marker: str, steps: list[ChainStep]
    ) -> list[tuple[str, dict[str, Any]]]:
        """The answer at ``url`` and those it refers to (``links`` rel=related, RDAP type,
        same kind of object), bounded and loop-checked. Failures become steps."""
        docs: list[tuple[str, dict[str, Any]]] = []
        seen: set[str] = set()
        while True:
            seen.add(url)
            got = self.http.get(url)
            if got.doc is None:
                steps.append(self._step(source, url, got.outcome, _fetch_detail(got)))
                return docs
            final = got.final_url or url
            if final != url:
                steps.append(self._step(source, url, "redirected", f"answered by {final}"))
            docs.append((final, got.doc))
            referral = _referral(got.doc, final, path_marker)
            if referral is None:
                return docs
            if referral in seen:
                steps.append(self._step(source, referral, "referral_loop", f"from {final}"))
                return docs
            if len(docs) > self.max_referrals:
                steps.append(self._step(source, referral, "skipped", "too many referrals"))
                return docs
            steps.append(self._step(source, final, "referral", f"to {referral}"))
            url = referral


def _referral(doc: dict[str, Any], url: str, path_marker: str) -> str | None:
    href = _link(doc, "related", path_marker)
    return href if href != url else None


def _link(doc: dict[str, Any], rel: str, path_marker: str) -> str | None:
    """The first RDAP-typed http(s) link of relation ``rel`` to an object of that kind."""
    for link in entities.as_list(doc.get("links")):
        if not isinstance(link, dict):
            continue
        href, kind = link.get("href"), str(link.get("type") or "")
        if link.get("rel") != rel or "rdap+json" not in kind or not isinstance(href, str):
            continue
        if href.startswith(("http://", "https://")) and path_marker in href:
            return href
    return None


def _fetch_detail(got: Fetched) -> str | None:
    if got.final_url and got.final_url != got.url:
        return f"{got.detail} (at {got.final_url})"
    return got.detail
