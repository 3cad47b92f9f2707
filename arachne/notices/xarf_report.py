"""One XARF v4 ``content``/``csam`` report per incident (URL), checked by the reference validator.

The XARF spec wants one incident per report; a notice carries one report per URL. Every
report goes through ``xarf.parse(report, strict=True)`` before it may be sent. Strict mode
turns every *recommended* field into a required one, and three of them cannot honestly be
filled for every report, so exactly these may be missing (``NOT_APPLICABLE``, plus
``domain`` and ``hash_values`` when there is nothing valid to put there):

- ``target_brand``: the impersonated brand, a phishing notion;
- ``ncmec_report_id``: Arachne files no CyberTipline reports;
- ``domain``: the schema's pattern rejects IP literals, single-label hosts and A-labels
  (``xn--``), so IDN hosts keep their punycode form in ``url`` only;
- ``hash_values``: only when the item has none of md5/sha1/sha256 (PDQ has no XARF field;
  it travels as a ``pdq:<hex>`` tag);
- ``confidence``: only for near matches (see ``EXACT_CONFIDENCE``).

Any other validator error is a bug and raises XarfInvalid: nothing invalid is ever sent.
The package's typed model (``xarf.CsamReport``, what ``xarf.parse`` hands receivers) must
accept the report too.
The installed jsonschema has no checkers for the ``uri``, ``hostname`` and ``date-time``
formats (they need optional packages), so those three are also checked here.

Never media: ``evidence`` holds one JSON record of hashes and locations (the spec asks for
"hash values and reference IDs only" for CSAM), never image bytes.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

import idna
import pydantic
import xarf

from arachne.clock import iso_utc
from arachne.errors import XarfInvalid
from arachne.notices.sender import address_domain, is_address, is_hostname

if TYPE_CHECKING:
    from arachne.notices.render import NoticeDraft, NoticeItem

XARF_VERSION = "4.2.0"
"""Pinned: the spec version the reports claim; xarf.SPEC_VERSION is what validates them."""

REPORT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/arachne/notices/xarf")
"""report_id = uuid5(namespace, reference + URL): a re-render gives the same id."""

EXACT_CONFIDENCE = 1.0
"""XARF confidence of an exact match (identical bytes). Near matches carry none: the
schema wants a number in 0..1, but xarf 1.0's model types confidence as an int (0-100),
so any fraction would make the package's own parser drop the report."""

NOT_APPLICABLE = frozenset({"target_brand", "ncmec_report_id"})
"""Recommended fields that never apply to Arachne's reports (see the module docstring)."""

DEFAULT_PORTS = {"http": 80, "https": 443}
DESCRIPTION_MAX = 1000

_REQUIRED = re.compile(r"^'(\w+)' is a required property$")
_HEX = re.compile(r"^[0-9a-f]+$")
_ASCII_HOST = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$")
_TAG_BAD = re.compile(r"[^a-z0-9_+-]+")
# Characters left as they are in each URL part; everything else is percent-encoded as UTF-8.
_SAFE_PATH = "/%:@!$&'()*+,;=-._~"
_SAFE_QUERY = _SAFE_PATH + "?"
_URI = re.compile(r"^https?://[\x21-\x7e]+$")


@dataclass(frozen=True)
class XarfUrl:
    """A URL as XARF needs it: ASCII, punycode host, no trailing dot, port kept."""

    url: str
    host: str  # A-label hostname, or the IP address (IPv6 without brackets)
    ip: str | None  # set when the host is an IP literal
    port: int  # explicit, else the scheme's default
    explicit_port: bool


def xarf_url(raw: str) -> XarfUrl:
    """Normalise a crawled URL; XarfInvalid when it cannot be a valid XARF ``url``."""
    try:
        parts = urlsplit(raw.strip())
        port = parts.port
    except ValueError as exc:
        raise XarfInvalid(f"URL {raw!r}: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise XarfInvalid(f"URL {raw!r}: only http and https URLs can be reported")
    host = unquote(parts.hostname or "").rstrip(".")
    if not host:
        raise XarfInvalid(f"URL {raw!r}: no host")
    if port == 0:
        raise XarfInvalid(f"URL {raw!r}: port 0")
    ip: str | None = None
    try:
        ip = str(ipaddress.ip_address(host))
        host = ip
        netloc_host = f"[{ip}]" if ":" in ip else ip
    except ValueError:
        host = _ascii_host(raw, host)
        netloc_host = host
    netloc = netloc_host + (f":{port}" if port is not None else "")
    if "@" in parts.netloc:  # keep credentials: they are part of the exact location
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = quote(userinfo, safe="%!$&'()*+,;=:") + "@" + netloc
    url = f"{scheme}://{netloc}{quote(parts.path, safe=_SAFE_PATH)}"
    if parts.query:
        url += "?" + quote(parts.query, safe=_SAFE_QUERY)
    if parts.fragment:
        url += "#" + quote(parts.fragment, safe=_SAFE_QUERY)
    return XarfUrl(url, host, ip, port or DEFAULT_PORTS[scheme], port is not None)


def _ascii_host(raw: str, host: str) -> str:
    if host.isascii():
        host = host.lower()
    else:
        try:  # UTS 46 as browsers do: "bücher.example" -> "xn--bcher-kva.example"
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise XarfInvalid(f"URL {raw!r}: host is not a valid IDN: {exc}") from exc
    if not _ASCII_HOST.match(host) or len(host) > 253:
        raise XarfInvalid(f"URL {raw!r}: {host!r} is not a hostname")
    return host


def report_id(reference: str, url: str) -> str:
    return str(uuid.uuid5(REPORT_NAMESPACE, f"{reference}\n{url}"))


def tag(namespace: str, value: str) -> str | None:
    """``namespace:value`` in XARF's tag alphabet; None when nothing usable is left."""
    value = _TAG_BAD.sub("-", value.lower()).lstrip("_+-")
    return f"{namespace}:{value}" if value else None


def build_report(draft: NoticeDraft, item: NoticeItem, classification: str) -> dict[str, Any]:
    """The XARF report for one item of the draft, validated; raises XarfInvalid."""
    loc = xarf_url(item.url)
    contact = {
        "org": draft.reporter_org[:200],
        "contact": draft.reporter_email,
        "domain": address_domain(draft.reporter_email),
    }
    report: dict[str, Any] = {
        "xarf_version": XARF_VERSION,
        "report_id": report_id(draft.reference, loc.url),
        "timestamp": iso_utc(item.first_seen_at or item.detected_at),
        "reporter": contact,
        "sender": dict(contact),
        "source_identifier": loc.ip or draft.ip or loc.host,
        # The server's port: explicit in the URL, else the scheme's.
        "source_port": loc.port,
        "category": "content",
        "type": "csam",
        "url": loc.url,
        "classification": classification,
        "detection_method": "hash_match",
        "media_type": "image",
        "evidence_source": "crawler",
        "verification_method": "automated_crawler",
        # Last time the crawler saw it live; notices are only sent for live content.
        "verified_at": iso_utc(item.last_checked_at or item.detected_at),
        "content_removed": False,
        "evidence": [_evidence(draft, item)],
        "tags": _tags(draft, item),
        "description": _description(draft, item),
    }
    hashes = {
        k: v.lower()
        for k, v in (("md5", item.md5), ("sha1", item.sha1), ("sha256", item.sha256))
        if v
    }
    if hashes:
        report["hash_values"] = hashes
    provider = draft.about_host_provider or draft.provider
    if provider:
        report["hosting_provider"] = provider
    if draft.country and re.fullmatch(r"[A-Za-z]{2}", draft.country):
        report["country_code"] = draft.country.upper()
    allowed = set(NOT_APPLICABLE) | ({"hash_values"} if not hashes else set())
    if item.match_kind == "exact":
        report["confidence"] = EXACT_CONFIDENCE
    else:
        allowed.add("confidence")
    if loc.ip is None:
        report["domain"] = loc.host
        errors = report_errors(report, allow_missing=frozenset(allowed))
        if any(e.startswith("domain:") for e in errors):
            # The schema's pattern refuses this host (an A-label, a single label): leave
            # domain out rather than send an invalid report; url still names the host.
            del report["domain"]
    if "domain" not in report:
        allowed.add("domain")
        errors = report_errors(report, allow_missing=frozenset(allowed))
    if errors:
        raise XarfInvalid(
            f"XARF report for {loc.url} is invalid: " + "; ".join(errors), tuple(errors)
        )
    return report


def report_errors(report: dict[str, Any], *, allow_missing: frozenset[str]) -> list[str]:
    """xarf strict validation plus the format checks it cannot run here, as messages."""
    result = xarf.parse(report, strict=True)
    errors = [
        f"{e.field or 'report'}: {e.message}"
        for e in result.errors
        if not (not e.field and (m := _REQUIRED.match(e.message)) and m.group(1) in allow_missing)
    ]
    errors += [f"{w.field or 'report'}: {w.message}" for w in result.warnings]
    # Receivers using the package get typed models: those must accept the report as well.
    try:
        xarf.CsamReport.model_validate(report)
    except pydantic.ValidationError as exc:
        errors += [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
    return errors + _format_errors(report)


def _format_errors(report: dict[str, Any]) -> list[str]:
    errors = []
    if not _URI.match(str(report.get("url", ""))):
        errors.append(f"url: {report.get('url')!r} is not an ASCII http(s) URI")
    for who in ("reporter", "sender"):
        info = report.get(who) or {}
        if not is_address(str(info.get("contact", ""))):
            errors.append(f"{who}.contact: {info.get('contact')!r} is not an email address")
        if not is_hostname(str(info.get("domain", ""))):
            errors.append(f"{who}.domain: {info.get('domain')!r} is not a hostname")
    for key in ("timestamp", "verified_at"):
        value = report.get(key)
        if value is not None and not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", value):
            errors.append(f"{key}: {value!r} is not an RFC 3339 UTC time")
    return errors


def _tags(draft: NoticeDraft, item: NoticeItem) -> list[str]:
    tags: list[str | None] = [
        tag("reference", draft.reference),
        f"cycle:{draft.cycle}",
        tag("match", item.match_kind),
    ]
    if draft.tier:
        tags.append(f"tier:{draft.tier}")
    if item.pdq and _HEX.match(item.pdq.lower()):
        tags.append(f"pdq:{item.pdq.lower()}")
    return [t for t in tags if t]


def _description(draft: NoticeDraft, item: NoticeItem) -> str:
    how = (
        "An image file identical (cryptographic hash) to one"
        if item.match_kind == "exact"
        else "An image visually the same (PDQ perceptual hash) as one"
    )
    text = (
        f"{how} on hash lists of known child sexual abuse material. "
        f"Notice {draft.reference}"
        + (f", reminder {draft.cycle}" if draft.cycle else "")
        + ". Please remove it. No image content is attached: hashes and locations only."
    )
    return text[:DESCRIPTION_MAX]


def _evidence(draft: NoticeDraft, item: NoticeItem) -> dict[str, Any]:
    """Where and how it matched, as JSON: the facts XARF has no field for (page, lists, PDQ)."""
    record = {
        "reference": draft.reference,
        "url": item.url,
        "page_url": item.page_url,
        "match_kind": item.match_kind,
        "hash_lists": list(item.list_names),
        "hashes": {
            k: v for k, v in (("sha256", item.sha256), ("sha1", item.sha1), ("md5", item.md5)) if v
        }
        | ({"pdq": item.pdq} if item.pdq else {}),
        "first_seen": iso_utc(item.first_seen_at or item.detected_at),
        "detected_at": iso_utc(item.detected_at),
    }
    payload = json.dumps(record, sort_keys=True, ensure_ascii=False).encode()
    return {
        "content_type": "application/json",
        "description": "Hash-match record (locations and hashes); no image content.",
        "payload": base64.b64encode(payload).decode("ascii"),
        "hash": "sha256:" + hashlib.sha256(payload).hexdigest(),
        "size": len(payload),
    }
