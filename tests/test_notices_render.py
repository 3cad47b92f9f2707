"""Rendering: one XARF v4 report per URL, each passing the reference validator, + en/nl text."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import xarf

from arachne.errors import ConfigError, XarfInvalid
from arachne.notices.classify import DEFAULT_TABLE, Classifier
from arachne.notices.render import (
    XARF_VERSION,
    NoticeDraft,
    NoticeItem,
    RenderedNotice,
    choose_language,
    iso_utc,
    render,
    sender_identity,
)
from arachne.notices.xarf_report import NOT_APPLICABLE, xarf_url
from arachne.settings import Settings

T0 = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
SHA_A, SHA_B, MD5, SHA1, PDQ = "a" * 64, "b" * 64, "c" * 32, "e" * 40, "d" * 64
# The only strict-mode complaints a report may carry: recommended fields that do not apply
# (always), or that have no valid value for this item (domain of an IP or IDN host,
# hash_values without crypto hashes, confidence of a near match); tests check when.
SPARED = re.compile(r"^'(\w+)' is a required property$")
MAY_LACK = NOT_APPLICABLE | {"domain", "hash_values", "confidence"}


def item(url: str, **kw: Any) -> NoticeItem:
    base = NoticeItem(
        url=url,
        page_url="http://host-a.test/gallery.html",
        sha256=SHA_A,
        md5=MD5,
        pdq=PDQ,
        match_kind="exact",
        list_names=("demo-list",),
        detected_at=T0,
    )
    return replace(base, **kw)


def draft(*items: NoticeItem, **kw: Any) -> NoticeDraft:
    base = NoticeDraft(
        reference="ARN-0123456789ab",
        host="host-a.test",
        recipient="abuse@host-a.example",
        items=items,
        reporter_org="Example Hotline",
        reporter_email="reports@hotline.example",
        ip="192.0.2.2",
    )
    return replace(base, **kw)


def strict_errors(report: dict[str, Any]) -> list[str]:
    """What xarf's strict mode still objects to, beyond the documented not-applicable fields."""
    result = xarf.parse(json.dumps(report), strict=True)
    out = []
    for e in result.errors:
        m = SPARED.match(e.message)
        if not e.field and m and m.group(1) in MAY_LACK:
            continue
        out.append(f"{e.field}: {e.message}")
    return out + [w.message for w in result.warnings]


def rendered_ok(d: NoticeDraft, **kw: Any) -> RenderedNotice:
    rendered = render(d, **kw)
    assert len(rendered.xarf_reports) == len(d.items)
    for report in rendered.xarf_reports:
        assert strict_errors(report) == [], report["url"]
        # Standard (non-strict) mode has nothing at all to say.
        plain = xarf.parse(report)
        assert plain.errors == [] and plain.warnings == [] and plain.report is not None
    return rendered


def listed_urls(body: str) -> list[str]:
    return re.findall(r"^\s+\[\d+\] (\S+)$", body, flags=re.MULTILINE)


def test_one_valid_report_per_url_with_the_core_fields() -> None:
    later = item("http://host-a.test/img/2.jpg", detected_at=T0 + timedelta(minutes=5))
    near = item("http://host-a.test/img/1.jpg", sha256=SHA_B, match_kind="near", pdq=None)
    rendered = rendered_ok(draft(later, near))
    first, second = rendered.xarf_reports
    assert [first["url"], second["url"]] == [near.url, later.url]  # sorted, like the body
    assert first["xarf_version"] == XARF_VERSION == xarf.SPEC_VERSION
    assert (first["category"], first["type"]) == ("content", "csam")
    assert (
        first["reporter"]
        == first["sender"]
        == {
            "org": "Example Hotline",
            "contact": "reports@hotline.example",
            "domain": "hotline.example",
        }
    )
    assert first["source_identifier"] == "192.0.2.2"
    assert first["source_port"] == 80
    assert first["domain"] == "host-a.test"
    assert first["hash_values"] == {"sha256": SHA_B, "md5": MD5}
    assert "confidence" not in first and second["confidence"] == 1.0
    assert first["detection_method"] == "hash_match" and first["media_type"] == "image"
    assert first["verification_method"] == "automated_crawler"
    assert first["classification"] == "baseline"
    assert first["content_removed"] is False
    assert "pdq:" + PDQ in second["tags"] and not any(t.startswith("pdq:") for t in first["tags"])
    assert {"reference:arn-0123456789ab", "cycle:0", "match:exact"} <= set(second["tags"])
    assert second["timestamp"] == "2026-11-25T10:05:00Z"
    # No v3 keys left: a parser would otherwise take the report for XARF v3.
    assert not {"Version", "ReporterInfo", "Report"} & set(first)
    assert not xarf.is_v3_report(first)


def test_times_first_seen_detected_and_last_checked() -> None:
    it = item(
        "http://host-a.test/1.jpg",
        first_seen_at=T0 - timedelta(days=1),
        last_checked_at=T0 + timedelta(hours=6),
    )
    (report,) = rendered_ok(draft(it)).xarf_reports
    assert report["timestamp"] == "2026-11-24T10:00:00Z"
    assert report["verified_at"] == "2026-11-25T16:00:00Z"
    (plain,) = rendered_ok(draft(item("http://host-a.test/1.jpg"))).xarf_reports
    assert plain["verified_at"] == "2026-11-25T10:00:00Z"  # the match itself verified it


@pytest.mark.parametrize(
    ("raw", "url", "source", "port", "domain"),
    [
        (
            "http://bücher.example/img/ä b.jpg",
            "http://xn--bcher-kva.example/img/%C3%A4%20b.jpg",
            "192.0.2.2",
            80,
            None,  # the schema's domain pattern refuses A-labels: left out
        ),
        (
            "https://Host-A.Test./x.jpg?s=1",
            "https://host-a.test/x.jpg?s=1",
            "192.0.2.2",
            443,
            "host-a.test",
        ),
        ("http://203.0.113.9/a.jpg", "http://203.0.113.9/a.jpg", "203.0.113.9", 80, None),
        (
            "https://[2001:DB8:0::1]:8443/a.jpg",
            "https://[2001:db8::1]:8443/a.jpg",
            "2001:db8::1",
            8443,
            None,
        ),
        (
            "http://host-a.test:8080/a.jpg",
            "http://host-a.test:8080/a.jpg",
            "192.0.2.2",
            8080,
            "host-a.test",
        ),
    ],
)
def test_url_forms(raw: str, url: str, source: str, port: int, domain: str | None) -> None:
    rendered = rendered_ok(draft(item(raw)))
    (report,) = rendered.xarf_reports
    assert report["url"] == url
    assert report["source_identifier"] == source
    assert report["source_port"] == port
    assert report.get("domain") == domain
    assert listed_urls(rendered.body_text) == [url]
    if raw != url:
        assert f"as seen:        {raw}" in rendered.body_text


def test_idn_host_in_the_text_shows_both_forms() -> None:
    rendered = rendered_ok(draft(item("http://bücher.example/1.jpg"), host="bücher.example"))
    assert "Host: bücher.example (xn--bcher-kva.example) (192.0.2.2)" in rendered.body_text


def test_the_domain_pattern_really_refuses_a_labels() -> None:
    """Why domain is omitted for IDN hosts: the reference validator rejects it."""
    (report,) = rendered_ok(draft(item("http://bücher.example/1.jpg"))).xarf_reports
    errors = xarf.parse({**report, "domain": "xn--bcher-kva.example"}).errors
    assert [e.field for e in errors] == ["domain"]


def test_many_urls_one_report_each_with_stable_distinct_ids() -> None:
    items = [item(f"http://host-a.test/img/{n:03}.jpg") for n in range(40)]
    one = rendered_ok(draft(*items))
    again = render(draft(*reversed(items)))
    ids = [r["report_id"] for r in one.xarf_reports]
    assert len(set(ids)) == 40
    assert ids == [r["report_id"] for r in again.xarf_reports]
    other = render(draft(*items, reference="ARN-ffffffffffff"))
    assert not set(ids) & {r["report_id"] for r in other.xarf_reports}
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", ids[0]
    )
    assert json.loads(one.xarf_json()) == list(one.xarf_reports)


def test_evidence_is_a_json_record_never_media() -> None:
    (report,) = rendered_ok(draft(item("http://host-a.test/1.jpg", sha1=SHA1))).xarf_reports
    (evidence,) = report["evidence"]
    assert evidence["content_type"] == "application/json"
    record = json.loads(base64.b64decode(evidence["payload"]))
    assert record["page_url"] == "http://host-a.test/gallery.html"
    assert record["hashes"] == {"sha256": SHA_A, "sha1": SHA1, "md5": MD5, "pdq": PDQ}
    assert record["hash_lists"] == ["demo-list"]
    assert report["hash_values"]["sha1"] == SHA1


def test_item_without_crypto_hashes_still_validates() -> None:
    it = item("http://host-a.test/1.jpg", sha256=None, md5=None, match_kind="near")
    (report,) = rendered_ok(draft(it)).xarf_reports
    assert "hash_values" not in report
    assert "pdq:" + PDQ in report["tags"]


@pytest.mark.parametrize(
    "raw", ["ftp://host-a.test/1.jpg", "http:///1.jpg", "http://host-a.test:99999/1.jpg"]
)
def test_urls_that_cannot_be_reported_are_refused(raw: str) -> None:
    with pytest.raises(XarfInvalid):
        render(draft(item(raw)))


def test_invalid_report_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(XarfInvalid, match="hash_values"):
        render(draft(item("http://host-a.test/1.jpg", sha256="not-hex")))
    with pytest.raises(XarfInvalid, match="contact"):
        render(draft(item("http://host-a.test/1.jpg"), reporter_email="nobody"))


def test_country_code_and_hosting_provider() -> None:
    d = draft(item("http://host-a.test/1.jpg"), country="nl", provider="Example Hosting")
    (report,) = rendered_ok(d).xarf_reports
    assert report["country_code"] == "NL"
    assert report["hosting_provider"] == "Example Hosting"
    cdn = replace(d, provider="Example CDN", about_host_provider="Origin Hosting", tier=1)
    (report,) = rendered_ok(cdn).xarf_reports
    assert report["hosting_provider"] == "Origin Hosting"
    assert "tier:1" in report["tags"]


# --- classification ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("categories", "expected"),
    [
        ((), "baseline"),
        (("A1",), "A1"),
        ((" b2 ",), "B2"),
        (("1",), "baseline"),  # VICS category 1
        (("A",), "baseline"),  # IWF grades severity, not age
        (("C", "B1"), "B1"),
        (("B2", "A2", "baseline"), "A2"),
        (("free text category",), "baseline"),
    ],
)
def test_classification_default_table(categories: tuple[str, ...], expected: str) -> None:
    d = draft(item("http://host-a.test/1.jpg", categories=categories))
    (report,) = rendered_ok(d).xarf_reports
    assert report["classification"] == expected


def test_classification_settings_override_and_extend_the_table() -> None:
    settings = Settings(classification_map={"IWF-A": "a1", "1": "B1"}, classification_default="B2")
    classifier = Classifier.from_settings(settings)
    assert classifier.classify(["iwf-a"]) == "A1"
    assert classifier.classify(["1"]) == "B1"  # overrides the built-in VICS entry
    assert classifier.classify(["unknown"]) == "B2"
    assert classifier.classify(["A2"]) == "A2"  # the rest of the table is kept
    d = draft(item("http://host-a.test/1.jpg", categories=("iwf-a",)))
    assert rendered_ok(d, settings=settings).xarf_reports[0]["classification"] == "A1"
    assert rendered_ok(d, classifier=classifier).xarf_reports[0]["classification"] == "A1"
    assert set(DEFAULT_TABLE.values()) <= {"baseline", "A1", "A2", "B1", "B2"}


@pytest.mark.parametrize(
    "update",
    [{"classification_map": {"x": "severe"}}, {"classification_default": "C"}],
)
def test_classification_values_outside_the_enum_are_config_errors(
    update: dict[str, Any],
) -> None:
    with pytest.raises(ConfigError, match="not a XARF classification"):
        Classifier.from_settings(Settings(**update))


# --- text -------------------------------------------------------------------------


def test_body_covers_dsa_elements() -> None:
    urls = ["http://host-a.test/img/1.jpg", "http://host-a.test/img/2.jpg"]
    near = item(urls[1], match_kind="near", list_names=("list-b", "list-c"))
    rendered = rendered_ok(draft(item(urls[0]), near))
    body = rendered.body_text
    assert rendered.language == "en"
    assert listed_urls(body) == urls  # exact locations, all of them, in order
    assert "found on page:  http://host-a.test/gallery.html" in body
    assert "match:          exact (identical file)" in body
    assert "match:          near (perceptual hash, PDQ)" in body
    assert "hash lists:     list-b, list-c" in body
    assert "hash lists of known child" in body  # why it is considered illegal
    assert "Example Hotline" in body and "reports@hotline.example" in body  # who reports
    assert "in good faith" in body and "accurate and complete" in body
    assert body.count("ARN-0123456789ab") >= 2
    assert "SHA-256:        " + SHA_A in body
    assert "carries no image content" in body
    assert "This is reminder" not in body and "Why you receive" not in body


def test_body_without_optional_values_prints_no_placeholders() -> None:
    it = item("http://host-a.test/1.jpg", page_url=None, pdq=None)
    body = render(draft(it, ip=None)).body_text
    assert "found on page" not in body and "PDQ:" not in body and "last checked" not in body
    assert "None" not in body


def test_subject() -> None:
    first = render(draft(item("http://host-a.test/1.jpg")))
    assert first.subject == (
        "[ARN-0123456789ab] Known child sexual abuse material at host-a.test"
        " - removal request (1 URL)"
    )
    two = render(draft(item("http://host-a.test/1.jpg"), item("http://host-a.test/2.jpg")))
    assert two.subject.endswith("(2 URLs)")


def reminder(**kw: Any) -> NoticeDraft:
    return draft(
        item("http://host-a.test/1.jpg", last_checked_at=T0 + timedelta(days=2)),
        reference="ARN-222222222222",
        cycle=2,
        first_reference="ARN-0123456789ab",
        first_sent_at=T0,
        **kw,
    )


def test_reminder_in_english() -> None:
    rendered = rendered_ok(reminder())
    assert rendered.subject.startswith("Reminder 2: [ARN-222222222222]")
    body = " ".join(rendered.body_text.split())
    assert "This is reminder 2." in body
    assert "first notified you of this content on 2026-11-25T10:00:00Z" in body
    assert "under reference ARN-0123456789ab" in body
    assert "last checked: 2026-11-27T10:00:00Z (still reachable)" in body
    assert rendered.first_reference == "ARN-0123456789ab"
    assert "cycle:2" in rendered.xarf_reports[0]["tags"]


def test_reminder_in_dutch() -> None:
    rendered = rendered_ok(reminder(country="NL"))
    assert rendered.language == "nl"
    assert rendered.subject.startswith("Herinnering 2: [ARN-222222222222]")
    body = " ".join(rendered.body_text.split())
    assert "Dit is herinnering 2." in body
    assert "voor het eerst over deze inhoud geïnformeerd op 2026-11-25T10:00:00Z" in body
    assert "onder referentie ARN-0123456789ab" in body
    assert "nog steeds bereikbaar" in body


def test_dutch_notice_covers_dsa_elements() -> None:
    rendered = rendered_ok(draft(item("http://host-a.test/1.jpg"), country="be"))
    body = rendered.body_text
    assert rendered.language == "nl"
    assert "Bekend materiaal van seksueel kindermisbruik op host-a.test" in rendered.subject
    assert rendered.subject.endswith("(1 URL)")
    assert listed_urls(body) == ["http://host-a.test/1.jpg"]
    assert "Geachte abuse-afdeling" in body
    assert "Waarom deze inhoud als illegaal wordt beschouwd" in body
    assert "te goeder trouw" in body and "juist en volledig" in body
    assert "Richtlijn 2011/93/EU" in body
    assert "geen beeldmateriaal" in body
    assert "overeenkomst:   exact (identiek bestand)" in body
    two = render(draft(item("http://a.test/1"), item("http://a.test/2"), country="NL"))
    assert two.subject.endswith("(2 URL's)")


@pytest.mark.parametrize(
    ("country", "override", "default", "expected"),
    [
        ("NL", None, "en", "nl"),
        ("SR", None, "en", "nl"),
        ("CW", None, "en", "nl"),
        ("DE", None, "nl", "en"),  # a known non-Dutch country: English, whatever the default
        (None, None, "nl", "nl"),  # unknown country: the configured default
        ("NL", "en", "en", "en"),  # the contact's explicit language wins
        ("US", "nl-BE", "en", "nl"),
        ("NL", "fr", "en", "en"),  # no French templates: English
        (None, None, "de", "en"),
    ],
)
def test_language_choice(
    country: str | None, override: str | None, default: str, expected: str
) -> None:
    assert choose_language(country, override, default) == expected


def test_language_override_and_settings_default_in_render() -> None:
    d = draft(item("http://host-a.test/1.jpg"), country="NL", language="en")
    assert render(d).language == "en"
    unknown = draft(item("http://host-a.test/1.jpg"))
    assert render(unknown, settings=Settings(notice_language="nl")).language == "nl"


@pytest.mark.parametrize(
    ("source", "tier", "english", "dutch"),
    [
        ("cdn", 1, "served through your network (CDN", "via uw netwerk aangeboden (CDN"),
        ("registrar", 2, "you are the registrar of the domain", "u bent de registrar"),
        ("rdap", 1, "you provide network connectivity to", "u levert de netwerkverbinding"),
        ("override", 1, "the contact to turn to when the hosting", "het aanspreekpunt wanneer"),
    ],
)
def test_escalation_says_why_this_recipient(
    source: str, tier: int, english: str, dutch: str
) -> None:
    d = draft(
        item("http://host-a.test/1.jpg"),
        tier=tier,
        recipient_source=source,
        about_host_provider="Origin Hosting",
        recipient="abuse@upstream.example",
    )
    en = rendered_ok(d)
    text = " ".join(en.body_text.split())
    assert english in text and "Origin Hosting" in text
    assert "forward this notice" in text
    assert "Earlier notices to the hosting provider have not led to the removal" in text
    assert en.subject.startswith("Please act or forward: [ARN-")
    nl = " ".join(render(replace(d, country="NL")).body_text.split())
    assert dutch in nl and "door te sturen" in nl and "Eerdere meldingen" in nl


def test_first_notice_to_a_cdn_explains_without_claiming_earlier_notices() -> None:
    d = draft(item("http://host-a.test/1.jpg"), recipient_source="cdn", tier=0)
    text = " ".join(render(d).body_text.split())
    assert "served through your network" in text
    assert "the origin server behind your service" in text
    assert "Earlier notices" not in text


def test_no_items_is_refused() -> None:
    with pytest.raises(ValueError, match="no URLs"):
        render(draft())


def test_xarf_url_keeps_credentials_query_and_fragment_encoded() -> None:
    loc = xarf_url("http://u:p@host-a.test/p?q=ü#frag")
    assert loc.url == "http://u:p@host-a.test/p?q=%C3%BC#frag"
    assert (loc.port, loc.explicit_port, loc.ip) == (80, False, None)


def test_iso_utc_treats_naive_as_utc_and_converts_offsets() -> None:
    assert iso_utc(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05Z"
    cet = timezone(timedelta(hours=1))
    assert iso_utc(datetime(2026, 1, 2, 3, 4, 5, tzinfo=cet)) == "2026-01-02T02:04:05Z"


def test_preview_identity_placeholders_still_make_valid_reports() -> None:
    ident = sender_identity(Settings(), preview=True)  # shipped defaults: hotline.invalid
    d = draft(item("http://host-a.test/1.jpg"), reporter_org=ident.org, reporter_email=ident.email)
    (report,) = rendered_ok(d).xarf_reports
    assert report["reporter"]["domain"] == "hotline.invalid"
