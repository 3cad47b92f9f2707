"""Render one notice for one host: XARF v4 JSON plus a readable text body.

Input is plain data (frozen dataclasses), so rendering needs no database and tests can call
it directly. A notice carries URLs, hashes and times, never image content.
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from arachne import __version__

TEMPLATES_DIR = Path(__file__).parent / "templates"
XARF_VERSION = "4.0.0"
# XARF's report_id is a UUID; deriving it from the reference keeps re-renders identical.
_REPORT_NS = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/arachne/notices")
# The classifications XARF's content/csam type knows; anything else is left out.
XARF_CLASSIFICATIONS = frozenset({"baseline", "A1", "A2", "B1", "B2"})


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
    classification: str | None = None  # from the hash entry's category, when XARF knows it


@dataclass(frozen=True)
class NoticeDraft:
    reference: str
    host: str
    recipient: str | None
    items: tuple[NoticeItem, ...]
    reporter_org: str
    reporter_email: str
    cycle: int = 0
    ip: str | None = None
    provider: str | None = None


@dataclass(frozen=True)
class RenderedNotice:
    reference: str
    subject: str
    body_text: str
    xarf: dict[str, Any] = field(hash=False)

    def xarf_json(self) -> str:
        """The attachment / outbox text: stable key order, UTF-8."""
        return json.dumps(self.xarf, indent=2, ensure_ascii=False)


def iso_utc(when: datetime) -> str:
    """ISO-8601 in UTC with a Z; naive datetimes (SQLite hands those back) are UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


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


def render(draft: NoticeDraft) -> RenderedNotice:
    if not draft.items:
        raise ValueError(f"notice {draft.reference}: no URLs to report")
    items = sorted(draft.items, key=lambda i: i.url)
    detected = min(i.detected_at for i in items)
    context = {
        "reference": draft.reference,
        "host": draft.host,
        "ip": draft.ip,
        "provider": draft.provider,
        "recipient": draft.recipient,
        "reporter_org": draft.reporter_org,
        "reporter_email": draft.reporter_email,
        "cycle": draft.cycle,
        "detected_at": iso_utc(detected),
        "items": [_item_context(i) for i in items],
    }
    env = _env()
    subject = " ".join(env.get_template("subject.txt.j2").render(context).split())
    body = env.get_template("body.txt.j2").render(context)
    return RenderedNotice(
        reference=draft.reference,
        subject=subject,
        body_text=body,
        xarf=build_xarf(draft, items, detected),
    )


def _item_context(item: NoticeItem) -> dict[str, Any]:
    return {
        "url": item.url,
        "page_url": item.page_url,
        "sha256": item.sha256,
        "md5": item.md5,
        "pdq": item.pdq,
        "list_names": list(item.list_names),
        "match_text": (
            "exact (identical file)"
            if item.match_kind == "exact"
            else "near (perceptual hash, PDQ)"
        ),
        "first_seen": iso_utc(item.first_seen_at or item.detected_at),
    }


def _hashes(item: NoticeItem) -> dict[str, str]:
    found = {"sha256": item.sha256, "md5": item.md5, "pdq": item.pdq}
    return {k: v for k, v in found.items() if v}


def build_xarf(
    draft: NoticeDraft, items: Sequence[NoticeItem], detected: datetime
) -> dict[str, Any]:
    """One XARF v4 report for the host.

    Two shapes in one document, since receivers parse one or the other: the xarf.org v4.0.0
    core fields (snake_case, ``category: content`` / ``type: csam``; its schema allows extra
    properties) and the Version/ReporterInfo/Report block. The snake_case ``url`` and
    ``hash_values`` can hold only one item, so they describe the first URL;
    ``Report.URLs`` lists every URL with its hashes.
    """
    first = items[0]
    reporter_domain = draft.reporter_email.rpartition("@")[2]
    reporter = {
        "org": draft.reporter_org,
        "contact": draft.reporter_email,
        "domain": reporter_domain,
    }
    date = iso_utc(detected)
    urls = [
        {
            "Url": i.url,
            "PageUrl": i.page_url,
            "Hashes": _hashes(i),
            "MatchKind": i.match_kind,
            "HashLists": list(i.list_names),
            "FirstSeen": iso_utc(i.first_seen_at or i.detected_at),
            "DetectedAt": iso_utc(i.detected_at),
        }
        for i in items
    ]
    doc: dict[str, Any] = {
        "xarf_version": XARF_VERSION,
        "report_id": str(uuid.uuid5(_REPORT_NS, draft.reference)),
        "timestamp": date,
        "reporter": reporter,
        "sender": dict(reporter),
        "source_identifier": draft.ip or draft.host,
        "category": "content",
        "type": "csam",
        "url": first.url,
        "detection_method": "hash_match",
        "media_type": "image",
        "evidence_source": "automated_scan",
        "verification_method": "automated_crawler",
        "hash_values": {k: v for k, v in _hashes(first).items() if k != "pdq"},
        "tags": [f"reference:{draft.reference.lower()}"],
        "description": (
            f"{len(items)} URL(s) on {draft.host} matched hash lists of known child sexual "
            "abuse material. No media attached."
        ),
    }
    if not _is_ip(draft.host):
        doc["domain"] = draft.host
    if draft.provider:
        doc["hosting_provider"] = draft.provider
    classes = {i.classification for i in items}
    if len(classes) == 1 and (only := classes.pop()) in XARF_CLASSIFICATIONS:
        doc["classification"] = only
    doc.update(
        {
            "Version": XARF_VERSION,
            "ReporterInfo": {
                "ReporterOrg": draft.reporter_org,
                "ReporterOrgDomain": reporter_domain,
                "ReporterOrgEmail": draft.reporter_email,
                "ReporterContactEmail": draft.reporter_email,
            },
            # The host may pass the notice on to its customer, who may be the offender.
            "Disclosure": False,
            "Report": {
                "ReportClass": "Content",
                "ReportType": "csam",
                "category": "content",
                "type": "csam",
                "Reference": draft.reference,
                "Cycle": draft.cycle,
                "Date": date,
                "SourceIdentifier": draft.host,
                "Source": {"Host": draft.host, "Ip": draft.ip},
                "DetectionMethod": "hash_match",
                "URLs": urls,
                "Generator": f"arachne/{__version__}",
            },
        }
    )
    return doc


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
