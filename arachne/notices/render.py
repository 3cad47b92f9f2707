"""Render one notice: a readable text body (English or Dutch) plus one XARF v4 report per URL.

Input is plain data (frozen dataclasses), so rendering needs no database and tests can call
it directly. A notice carries URLs, hashes and times, never image content. Every XARF
report is validated as it is built (``xarf_report``): render raises XarfInvalid rather
than return something a receiver's parser would refuse.

Language: ``draft.language`` (a per-contact override) wins; otherwise Dutch for providers
in Dutch-speaking countries (``DUTCH_COUNTRIES``), English for other known countries, and
the configured default (``settings.notice_language``) when the country is unknown. A
language without templates falls back to English.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from arachne.clock import iso_utc
from arachne.errors import XarfInvalid
from arachne.notices.classify import Classifier
from arachne.notices.sender import SenderIdentity, sender_identity
from arachne.notices.xarf_report import XARF_VERSION, build_report, xarf_url

if TYPE_CHECKING:
    from arachne.settings import Settings

__all__ = [
    "XARF_VERSION",
    "NoticeDraft",
    "NoticeItem",
    "RenderedNotice",
    "SenderIdentity",
    "choose_language",
    "iso_utc",
    "render",
    "sender_identity",
]

TEMPLATES_DIR = Path(__file__).parent / "templates"
LANGUAGES = ("en", "nl")
"""Languages with templates (body.<lang>.txt.j2, subject.<lang>.txt.j2)."""
DUTCH_COUNTRIES = frozenset({"NL", "BE", "SR", "AW", "CW", "SX", "BQ"})
"""Provider countries (RDAP, ISO 3166-1) whose notices are written in Dutch."""


@dataclass(frozen=True)
class NoticeItem:
    """One matched image URL on the host."""

    url: str
    page_url: str | None
    sha256: str | None
    md5: str | None
    pdq: str | None
    match_kind: str  # exact | near
    list_names: tuple[str, ...]
    detected_at: datetime
    first_seen_at: datetime | None = None
    categories: tuple[str, ...] = ()  # the matched entries' raw list categories
    last_checked_at: datetime | None = None  # last re-check that found it still up
    sha1: str | None = None


@dataclass(frozen=True)
class NoticeDraft:
    reference: str
    host: str
    recipient: str | None
    items: tuple[NoticeItem, ...]
    reporter_org: str
    reporter_email: str
    cycle: int = 0  # 0 = first notice, n = n-th reminder
    ip: str | None = None
    provider: str | None = None
    country: str | None = None  # the recipient's country (RDAP), picks the language
    language: str | None = None  # explicit per-contact override
    first_reference: str | None = None  # reminders: the first notice's reference
    first_sent_at: datetime | None = None  # reminders: when the first notice went out
    tier: int = 0  # 0 = the host's own contact; >0 = escalated (CDN, upstream, registrar)
    about_host_provider: str | None = None  # escalations: whom the content is actually on
    recipient_source: str | None = None  # override | rdap | cdn | registrar
    reappeared: bool = False  # a reminder about content that was removed and came back


@dataclass(frozen=True)
class RenderedNotice:
    reference: str
    subject: str
    body_text: str
    xarf_reports: tuple[dict[str, Any], ...] = field(hash=False)
    language: str
    first_reference: str | None = None  # reminders thread onto the first notice (SMTP)

    def xarf_json(self) -> str:
        """All reports as one JSON array (outbox, webhook, storage)."""
        return json.dumps(list(self.xarf_reports), indent=2, ensure_ascii=False)


def choose_language(country: str | None, override: str | None = None, default: str = "en") -> str:
    def base(tag: str | None) -> str | None:
        return tag.strip().replace("_", "-").split("-")[0].lower() if tag else None

    if override and override.strip():
        lang = base(override)
        return lang if lang in LANGUAGES else "en"
    if country and country.strip():
        return "nl" if country.strip().upper() in DUTCH_COUNTRIES else "en"
    lang = base(default)
    return lang if lang in LANGUAGES else "en"


@cache
def _env() -> Environment:
    # Plain text: no HTML escaping (URLs must appear exactly), and a missing variable is a
    # bug, not an empty string in a legal notice.
    return Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=False,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def render(
    draft: NoticeDraft,
    *,
    classifier: Classifier | None = None,
    settings: Settings | None = None,
) -> RenderedNotice:
    """Text + XARF reports for the draft; XarfInvalid if a report would be invalid.

    ``classifier`` maps list categories to XARF classifications; without one it is built
    from ``settings`` (ConfigError for bad values), else the built-in table is used.
    ``settings`` also gives the default language for recipients of unknown country.
    """
    if not draft.items:
        raise ValueError(f"notice {draft.reference}: no URLs to report")
    if classifier is None:
        classifier = Classifier.from_settings(settings) if settings else Classifier()
    items = sorted(draft.items, key=lambda i: i.url)
    language = choose_language(
        draft.country, draft.language, settings.notice_language if settings else "en"
    )
    reports = tuple(build_report(draft, i, classifier.classify(i.categories)) for i in items)
    context = _context(draft, items, reports)
    env = _env()
    subject = env.get_template(f"subject.{language}.txt.j2").render(context)
    body = env.get_template(f"body.{language}.txt.j2").render(context)
    return RenderedNotice(
        reference=draft.reference,
        subject=" ".join(subject.split()),
        body_text=body,
        xarf_reports=reports,
        language=language,
        first_reference=draft.first_reference if draft.cycle else None,
    )


def recipient_role(draft: NoticeDraft) -> str:
    """Why this recipient gets the notice: host | cdn | registrar | upstream | escalation.

    ``escalation``: a later tier the operators named themselves (an override), of which
    nothing more is known than that it should act or pass the notice on.
    """
    if draft.recipient_source in ("cdn", "registrar"):
        return draft.recipient_source
    if draft.tier == 0:
        return "host"
    return "escalation" if draft.recipient_source == "override" else "upstream"


def _context(
    draft: NoticeDraft, items: list[NoticeItem], reports: tuple[dict[str, Any], ...]
) -> dict[str, Any]:
    host = draft.host.rstrip(".")
    return {
        "reference": draft.reference,
        "host": host,
        "host_ascii": _ascii_form(host),
        "ip": draft.ip,
        "provider": draft.provider,
        "about_host_provider": draft.about_host_provider,
        "recipient": draft.recipient,
        "recipient_source": draft.recipient_source,
        "role": recipient_role(draft),
        "tier": draft.tier,
        "reporter_org": draft.reporter_org,
        "reporter_email": draft.reporter_email,
        "cycle": draft.cycle,
        "reappeared": draft.reappeared,
        "first_reference": draft.first_reference,
        "first_sent_at": iso_utc(draft.first_sent_at) if draft.first_sent_at else None,
        "detected_at": iso_utc(min(i.detected_at for i in items)),
        "items": [_item_context(i, r) for i, r in zip(items, reports, strict=True)],
    }


def _ascii_form(host: str) -> str | None:
    """The punycode form of an IDN host, for the text; None when it is the same."""
    bare = host.strip("[]")
    try:
        ipaddress.ip_address(bare)
        return None
    except ValueError:
        pass
    try:
        ascii_host = xarf_url(f"http://{host}/").host
    except XarfInvalid:
        return None
    return ascii_host if ascii_host != host.lower() else None


def _item_context(item: NoticeItem, report: dict[str, Any]) -> dict[str, Any]:
    return {
        "url": report["url"],
        "url_as_seen": item.url if item.url != report["url"] else None,
        "page_url": item.page_url,
        "sha256": item.sha256,
        "sha1": item.sha1,
        "md5": item.md5,
        "pdq": item.pdq,
        "list_names": list(item.list_names),
        "exact": item.match_kind == "exact",
        "first_seen": iso_utc(item.first_seen_at or item.detected_at),
        "last_checked": iso_utc(item.last_checked_at) if item.last_checked_at else None,
    }
