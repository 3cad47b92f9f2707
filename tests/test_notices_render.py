from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from arachne.notices.render import NoticeDraft, NoticeItem, iso_utc, render

T0 = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
SHA_A = "a" * 64
SHA_B = "b" * 64


def item(url: str, **kw: object) -> NoticeItem:
    base = NoticeItem(
        url=url,
        page_url="http://host-a.test/gallery.html",
        sha256=SHA_A,
        md5="c" * 32,
        pdq="d" * 64,
        match_kind="exact",
        list_names=("demo-list",),
        detected_at=T0,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def draft(*items: NoticeItem, **kw: object) -> NoticeDraft:
    base = NoticeDraft(
        reference="ARN-0123456789ab",
        host="host-a.test",
        recipient="abuse@host-a.example",
        items=items,
        reporter_org="Example Hotline",
        reporter_email="reports@hotline.example",
        cycle=0,
        ip="127.0.0.2",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def listed_urls(body: str) -> list[str]:
    """The URLs the body lists as locations (``[n] URL`` lines)."""
    return re.findall(r"^\s+\[\d+\] (\S+)$", body, flags=re.MULTILINE)


def test_xarf_core_fields() -> None:
    first = item("http://host-a.test/img/2.jpg", detected_at=T0 + timedelta(minutes=5))
    second = item("http://host-a.test/img/1.jpg", sha256=SHA_B, match_kind="near", pdq=None)
    x = render(draft(first, second)).xarf
    assert x["Version"] == "4.0.0"
    assert x["xarf_version"] == "4.0.0"
    assert (x["category"], x["type"]) == ("content", "csam")
    report = x["Report"]
    assert (report["ReportClass"], report["ReportType"]) == ("Content", "csam")
    assert (report["category"], report["type"]) == ("content", "csam")
    assert report["SourceIdentifier"] == "host-a.test"
    assert report["Source"] == {"Host": "host-a.test", "Ip": "127.0.0.2"}
    assert report["Reference"] == "ARN-0123456789ab"
    # Detection time is the earliest match, in UTC with a Z.
    assert report["Date"] == x["timestamp"] == "2026-11-25T10:00:00Z"
    assert x["ReporterInfo"]["ReporterOrg"] == "Example Hotline"
    assert x["ReporterInfo"]["ReporterOrgEmail"] == "reports@hotline.example"
    assert x["ReporterInfo"]["ReporterContactEmail"] == "reports@hotline.example"
    assert x["reporter"] == {
        "org": "Example Hotline",
        "contact": "reports@hotline.example",
        "domain": "hotline.example",
    }
    assert x["detection_method"] == "hash_match"
    assert x["domain"] == "host-a.test"
    assert x["source_identifier"] == "127.0.0.2"


def test_xarf_lists_every_url_with_its_hashes_sorted() -> None:
    a = item("http://host-a.test/img/2.jpg", detected_at=T0 + timedelta(minutes=5))
    b = item("http://host-a.test/img/1.jpg", sha256=SHA_B, match_kind="near", pdq=None)
    x = render(draft(a, b)).xarf
    urls = x["Report"]["URLs"]
    assert [u["Url"] for u in urls] == ["http://host-a.test/img/1.jpg", a.url]
    assert urls[0]["Hashes"] == {"sha256": SHA_B, "md5": "c" * 32}
    assert urls[1]["Hashes"] == {"sha256": SHA_A, "md5": "c" * 32, "pdq": "d" * 64}
    assert [u["MatchKind"] for u in urls] == ["near", "exact"]
    assert urls[1]["FirstSeen"] == "2026-11-25T10:05:00Z"
    assert urls[0]["HashLists"] == ["demo-list"]
    # The single-URL core fields describe the first URL.
    assert x["url"] == "http://host-a.test/img/1.jpg"
    assert x["hash_values"] == {"sha256": SHA_B, "md5": "c" * 32}


def test_first_seen_differs_from_detection_when_known() -> None:
    seen = T0 - timedelta(days=1)
    x = render(draft(item("http://host-a.test/1.jpg", first_seen_at=seen))).xarf
    assert x["Report"]["URLs"][0]["FirstSeen"] == "2026-11-24T10:00:00Z"
    assert x["Report"]["URLs"][0]["DetectedAt"] == "2026-11-25T10:00:00Z"


def test_report_id_is_a_uuid_stable_per_reference() -> None:
    one = render(draft(item("http://host-a.test/1.jpg"))).xarf["report_id"]
    again = render(draft(item("http://host-a.test/1.jpg"))).xarf["report_id"]
    other = render(draft(item("http://host-a.test/1.jpg"), reference="ARN-ffffffffffff"))
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", one)
    assert one == again != other.xarf["report_id"]


def test_classification_only_when_all_items_agree() -> None:
    a1 = item("http://host-a.test/1.jpg", classification="A1")
    a1b = item("http://host-a.test/2.jpg", classification="A1")
    b2 = item("http://host-a.test/3.jpg", classification="B2")
    assert render(draft(a1, a1b)).xarf["classification"] == "A1"
    assert "classification" not in render(draft(a1, b2)).xarf
    assert "classification" not in render(draft(item("http://host-a.test/4.jpg"))).xarf


def test_ip_host_has_no_domain_field() -> None:
    x = render(draft(item("http://127.0.0.2/1.jpg"), host="127.0.0.2")).xarf
    assert "domain" not in x


def test_xarf_is_json_serialisable() -> None:
    rendered = render(draft(item("http://host-a.test/ü.jpg")))
    assert json.loads(rendered.xarf_json()) == rendered.xarf


def test_body_covers_dsa_elements() -> None:
    urls = ["http://host-a.test/img/1.jpg", "http://host-a.test/img/2.jpg"]
    near = item(urls[1], match_kind="near", list_names=("list-b", "list-c"))
    body = render(draft(item(urls[0]), near)).body_text
    assert listed_urls(body) == urls  # exact locations, all of them, in order
    assert "found on page:  http://host-a.test/gallery.html" in body
    assert "match:          exact (identical file)" in body
    assert "match:          near (perceptual hash, PDQ)" in body
    assert "hash lists:     list-b, list-c" in body
    assert "hash lists of known child" in body  # why it is considered illegal
    assert "Example Hotline" in body and "reports@hotline.example" in body  # who reports
    assert "in good faith" in body and "accurate and complete" in body
    assert body.count("ARN-0123456789ab") >= 2  # reference, and quoted in the reply request
    assert "Please remove the content" in body
    assert "SHA-256:        " + SHA_A in body
    assert "carries no image content" in body


def test_body_without_page_url_or_pdq_prints_no_placeholders() -> None:
    body = render(draft(item("http://host-a.test/1.jpg", page_url=None, pdq=None))).body_text
    assert "found on page" not in body
    assert "PDQ:" not in body
    assert "None" not in body


def test_subject_and_reminder_cycle() -> None:
    first = render(draft(item("http://host-a.test/1.jpg")))
    assert "[ARN-0123456789ab]" in first.subject
    assert "host-a.test" in first.subject
    assert "(1 URL)" in first.subject
    assert "\n" not in first.subject
    assert not first.subject.startswith("Reminder")
    reminder = render(draft(item("http://host-a.test/1.jpg"), item("http://x/2"), cycle=2))
    assert reminder.subject.startswith("Reminder 2:")
    assert "(2 URLs)" in reminder.subject
    assert "reminder 2" in reminder.body_text


def test_no_items_is_refused() -> None:
    with pytest.raises(ValueError, match="no URLs"):
        render(draft())


def test_iso_utc_treats_naive_as_utc_and_converts_offsets() -> None:
    assert iso_utc(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05Z"
    cet = timezone(timedelta(hours=1))
    assert iso_utc(datetime(2026, 1, 2, 3, 4, 5, tzinfo=cet)) == "2026-01-02T02:04:05Z"
