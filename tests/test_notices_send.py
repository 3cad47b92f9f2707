"""The notices stage end to end: a real store, a real local SMTP server (aiosmtpd)."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import xarf
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from arachne.errors import ConfigError, UnknownCampaign
from arachne.notices.contacts import OverridesResolver
from arachne.notices.deliver import OutboxNotifier, SmtpNotifier
from arachne.notices.send import notice_reference, send_notices
from arachne.settings import Settings
from arachne.store.db import Store
from arachne.store.models import (
    AuditLog,
    Campaign,
    HashEntry,
    HashList,
    Host,
    Image,
    Match,
    Notice,
    Sighting,
)
from tests.conftest import drop_postgres_database, fresh_postgres_database

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
OVERRIDES = """
[hosts]
"127.0.0.2" = "abuse@host-a.example"
"images.example.org" = { email = "abuse@example.org", provider = "Example Hosting" }
"""
A, B, C = "host-a.test", "cdn.images.example.org", "nobody.test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink:
    """aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 OK"

    def messages(self) -> list[EmailMessage]:
        return [message_from_bytes(e.content, policy=policy.default) for e in self.envelopes]  # type: ignore[misc]


@pytest.fixture
def smtp() -> Iterator[tuple[Sink, int]]:
    sink, port = Sink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    contacts = tmp_path / "contacts.toml"
    contacts.write_text(OVERRIDES)
    common: dict[str, Any] = {
        "data_dir": tmp_path,
        "contacts_file": contacts,
        "reporter_org": "Example Hotline",
        "reporter_email": "reports@hotline.example",
        "smtp_from": "notices@hotline.example",
        "redis_url": None,
    }
    if request.param == "sqlite":
        yield Settings(database_url=None, **common)
        return
    # A throwaway database per test keeps PostgreSQL runs isolated from everything else.
    name = f"arachne_notices_{uuid.uuid4().hex[:12]}"
    url = fresh_postgres_database(name)
    try:
        yield Settings(database_url=url, **common)
    finally:
        drop_postgres_database(name)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    s = Store.open(settings)
    try:
        yield s
    finally:
        s.dispose()


class World:
    """Builds campaigns, images, sightings and matches by hand."""

    def __init__(self, store: Store) -> None:
        self.store = store
        with store.session() as session:
            hl = HashList(name="demo-list", format="sha256")
            session.add(hl)
            session.flush()
            self.list_id = hl.id
        self.campaigns: dict[str, int] = {}

    def campaign(self, name: str) -> int:
        if name not in self.campaigns:
            with self.store.session() as session:
                c = Campaign(name=name, seeds=["http://seed.test/"], scope={})
                session.add(c)
                session.flush()
                self.campaigns[name] = c.id
        return self.campaigns[name]

    def sighting(
        self,
        host: str,
        path: str,
        ip: str | None,
        *,
        match: str | None = "exact",
        campaign: str = "test",
        retracted: bool = False,
    ) -> str:
        cid = self.campaign(campaign)
        url = f"http://{host}/{path}"
        digest = hashlib.sha256(url.encode()).hexdigest()
        with self.store.session() as session:
            image = session.scalar(select(Image).where(Image.sha256 == digest))
            if image is None:
                image = Image(
                    sha256=digest,
                    md5=hashlib.md5(url.encode()).hexdigest(),
                    sha1=hashlib.sha1(url.encode()).hexdigest(),
                    pdq="f" * 64,
                    size=1234,
                )
                session.add(image)
            sighting = Sighting(
                campaign_id=cid,
                url_key=hashlib.sha1(url.encode()).hexdigest(),
                image_url=url,
                page_url=f"http://{host}/page.html",
                host=host,
                image=image,
                http_status=200,
                server_ip=ip,
                fetched_at=T0,
            )
            session.add(sighting)
            if match is not None:
                entry = session.scalar(
                    select(HashEntry)
                    .where(HashEntry.list_id == self.list_id)
                    .where(HashEntry.value == digest)
                )
                if entry is None:
                    entry = HashEntry(
                        list_id=self.list_id,
                        kind="sha256",
                        value=digest,
                        category="A1",
                        deleted_at=T0 if retracted else None,
                    )
                    session.add(entry)
                session.flush()
                session.add(
                    Match(
                        campaign_id=cid,
                        sighting_id=sighting.id,
                        entry_id=entry.id,
                        kind=match,
                        hash_kind="sha256" if match == "exact" else "pdq",
                        distance=0 if match == "exact" else 12,
                        created_at=T0,
                    )
                )
        return url


@pytest.fixture
def world(store: Store) -> World:
    w = World(store)
    w.sighting(A, "img/1.jpg", "127.0.0.2")
    w.sighting(A, "img/2.jpg", "127.0.0.2", match="near")
    w.sighting(A, "img/clean.jpg", "127.0.0.2", match=None)
    w.sighting(A, "img/retracted.jpg", "127.0.0.2", retracted=True)
    w.sighting(A, "img/other-campaign.jpg", "127.0.0.2", campaign="other")
    w.sighting(B, "x.png", "127.0.0.3")
    w.sighting(C, "y.gif", "127.0.0.4")
    w.sighting("clean.test", "z.jpg", "127.0.0.5", match=None)
    return w


EXPECTED = {
    A: {f"http://{A}/img/1.jpg", f"http://{A}/img/2.jpg"},
    B: {f"http://{B}/x.png"},
    C: {f"http://{C}/y.gif"},
}


def smtp_notifier(port: int) -> SmtpNotifier:
    return SmtpNotifier("127.0.0.1", port, "notices@hotline.example", timeout=5)


def listed_urls(body: str) -> set[str]:
    return set(re.findall(r"^\s+\[\d+\] (\S+)\r?$", body, flags=re.MULTILINE))


def body_and_attachments(msg: EmailMessage) -> tuple[str, list[EmailMessage]]:
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None
    return body.get_content(), list(msg.iter_attachments())  # type: ignore[arg-type]


def notices(store: Store) -> dict[str, list[Notice]]:
    with store.session() as session:
        rows = session.scalars(select(Notice).order_by(Notice.id)).all()
        out: dict[str, list[Notice]] = {}
        for n in rows:
            out.setdefault(n.host.hostname, []).append(n)
        return out


def count(store: Store, model: Any) -> int:
    with store.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def send(store: Store, settings: Settings, port: int, **kw: Any) -> Any:
    wired = settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": port})
    notifier = SmtpNotifier.from_settings(wired)
    return send_notices(store, settings, "test", notifier=notifier, now=T0, **kw)


def test_one_message_per_host_with_its_urls(
    store: Store, settings: Settings, world: World, smtp: tuple[Sink, int]
) -> None:
    sink, port = smtp
    report = send(store, settings, port)

    assert (report.hosts, report.sent, report.no_contact, report.failed) == (3, 2, 1, 0)
    by_rcpt = {tuple(e.rcpt_tos): e for e in sink.envelopes}
    assert set(by_rcpt) == {("abuse@host-a.example",), ("abuse@example.org",)}
    rows = notices(store)
    for msg in sink.messages():
        host = A if msg["To"] == "abuse@host-a.example" else B
        body, attachments = body_and_attachments(msg)
        assert listed_urls(body) == EXPECTED[host]
        others = set().union(*(urls for h, urls in EXPECTED.items() if h != host))
        assert not any(u in body for u in others)
        assert msg["X-Arachne-Reference"] == rows[host][0].reference
        assert rows[host][0].reference in msg["Message-ID"]
        assert rows[host][0].reference in msg["Subject"]
        assert msg["Reply-To"] == "reports@hotline.example"
        # Only the text body and one XARF report per URL: never media.
        parts = [p.get_content_type() for p in msg.walk() if not p.is_multipart()]
        assert parts == ["text/plain"] + ["application/json"] * len(EXPECTED[host])
        reports = [json.loads(a.get_content()) for a in attachments]
        assert {r["url"] for r in reports} == EXPECTED[host]
        assert {(r["category"], r["type"]) for r in reports} == {("content", "csam")}
        assert {r["reporter"]["contact"] for r in reports} == {"reports@hotline.example"}
        assert all(xarf.parse(r).errors == [] for r in reports)
        assert reports == sorted(rows[host][0].xarf, key=lambda r: r["url"])

    assert not any(b"\xff\xd8\xff" in e.content or b"\x89PNG" in e.content for e in sink.envelopes)
    assert set(rows) == {A, B, C}  # clean.test had no matches: no notice
    a, b, c = rows[A][0], rows[B][0], rows[C][0]
    assert (a.status, a.attempts, a.sent_at is not None) == ("sent", 1, True)
    assert a.urls == sorted(EXPECTED[A])
    assert a.reference == notice_reference(A, sorted(EXPECTED[A]), 0)
    assert (c.status, c.recipient, c.attempts, c.sent_at) == ("no_contact", None, 0, None)
    assert set(c.urls) == EXPECTED[C] and c.body and c.xarf
    assert b.channel == "smtp" and b.recipient == "abuse@example.org"

    with store.session() as session:
        hosts = {h.hostname: h for h in session.scalars(select(Host))}
        audit = session.scalars(select(AuditLog).order_by(AuditLog.id)).all()
    assert set(hosts) == {A, B, C}
    assert (hosts[A].abuse_email, hosts[A].contact_source, hosts[A].ip) == (
        "abuse@host-a.example",
        "override",
        "127.0.0.2",
    )
    assert (hosts[B].provider, hosts[B].abuse_email) == ("Example Hosting", "abuse@example.org")
    assert (hosts[C].abuse_email, hosts[C].contact_source) == (None, "none")
    actions = sorted((r.action, r.detail["reference"]) for r in audit)
    assert actions == sorted(
        [
            ("notice.sent", a.reference),
            ("notice.sent", b.reference),
            ("notice.no_contact", c.reference),
        ]
    )


def test_second_call_sends_nothing_new(
    store: Store, settings: Settings, world: World, smtp: tuple[Sink, int]
) -> None:
    sink, port = smtp
    send(store, settings, port)
    assert len(sink.envelopes) == 2
    again = send(store, settings, port)
    assert (again.sent, again.already_sent, again.no_contact, again.failed) == (0, 2, 1, 0)
    assert len(sink.envelopes) == 2
    assert count(store, Notice) == 3
    assert {o.status for o in again.notices if o.host in (A, B)} == {"already_sent"}


def test_new_match_later_gives_one_notice_with_only_the_new_url(
    store: Store, settings: Settings, world: World, smtp: tuple[Sink, int]
) -> None:
    sink, port = smtp
    send(store, settings, port)
    new_url = world.sighting(A, "img/3.jpg", "127.0.0.2")
    report = send(store, settings, port)
    assert (report.sent, report.already_sent) == (1, 1)
    assert len(sink.envelopes) == 3
    msg = sink.messages()[-1]
    assert msg["To"] == "abuse@host-a.example"
    body, attachments = body_and_attachments(msg)
    assert listed_urls(body) == {new_url}
    assert [json.loads(a.get_content())["url"] for a in attachments] == [new_url]
    rows = notices(store)[A]
    assert [n.urls for n in rows] == [sorted(EXPECTED[A]), [new_url]]
    assert rows[0].reference != rows[1].reference


def test_smtp_failure_is_recorded_and_retried_on_the_same_row(
    store: Store, settings: Settings, world: World, smtp: tuple[Sink, int]
) -> None:
    sink, port = smtp
    closed = free_port()  # nothing listens here
    first = send(store, settings, closed)
    assert (first.sent, first.failed, first.no_contact) == (0, 2, 1)
    rows = notices(store)
    assert rows[A][0].status == "queued"  # the server is down: retried, not given up
    assert rows[A][0].attempts == 1
    assert f"127.0.0.1:{closed}" in (rows[A][0].last_error or "")
    assert rows[A][0].sent_at is None

    second = send(store, settings, closed)
    assert second.failed == 2
    assert notices(store)[A][0].attempts == 2

    third = send(store, settings, port)
    assert (third.sent, third.failed) == (2, 0)
    assert len(sink.envelopes) == 2
    after = notices(store)
    assert count(store, Notice) == 3
    assert after[A][0].id == rows[A][0].id
    assert after[A][0].reference == rows[A][0].reference
    assert (after[A][0].status, after[A][0].attempts, after[A][0].last_error) == ("sent", 3, None)
    with store.session() as session:
        failed = session.scalar(
            select(func.count()).select_from(AuditLog).where(AuditLog.action == "notice.queued")
        )
    assert failed == 4


def test_no_contact_is_sent_once_an_override_appears(
    store: Store, settings: Settings, world: World, smtp: tuple[Sink, int]
) -> None:
    sink, port = smtp
    send(store, settings, port)
    assert settings.contacts_file is not None
    settings.contacts_file.write_text(OVERRIDES + '"nobody.test" = "abuse@nobody.example"\n')
    report = send(store, settings, port)
    assert (report.sent, report.no_contact) == (1, 0)
    assert sink.envelopes[-1].rcpt_tos == ["abuse@nobody.example"]
    rows = notices(store)[C]
    assert len(rows) == 1
    assert (rows[0].status, rows[0].recipient) == ("sent", "abuse@nobody.example")
    with store.session() as session:
        host = session.scalar(select(Host).where(Host.hostname == C))
        assert host is not None and host.abuse_email == "abuse@nobody.example"


class Crashing:
    """Stands in for a process killed mid-delivery (not a DeliveryError)."""

    channel = "smtp"

    def deliver(self, rendered: Any, recipient: str) -> None:
        raise RuntimeError("killed")


@pytest.mark.parametrize("first_outcome", ["queued", "pending"])
def test_unsent_notice_is_superseded_by_a_larger_one(
    store: Store, settings: Settings, world: World, smtp: tuple[Sink, int], first_outcome: str
) -> None:
    sink, port = smtp
    if first_outcome == "queued":
        send(store, settings, free_port())
    else:
        with pytest.raises(RuntimeError):
            send_notices(store, settings, "test", notifier=Crashing(), now=T0)
    assert notices(store)[B][0].status == first_outcome
    new_url = world.sighting(B, "x2.png", "127.0.0.3")
    send(store, settings, port)
    rows = notices(store)[B]
    assert [(n.status, len(n.urls)) for n in rows] == [("superseded", 1), ("sent", 2)]
    assert new_url in rows[1].urls
    assert rows[0].last_error == f"superseded by {rows[1].reference}"
    assert sum(1 for e in sink.envelopes if e.rcpt_tos == ["abuse@example.org"]) == 1


def test_unsent_notice_with_other_urls_is_not_superseded(
    store: Store, settings: Settings, world: World, smtp: tuple[Sink, int]
) -> None:
    sink, port = smtp
    # Campaign "other" matched a different URL on host A; its notice failed.
    send_notices(store, settings, "other", notifier=smtp_notifier(free_port()), now=T0)
    send(store, settings, port)
    rows = notices(store)[A]
    assert [(n.status, n.urls) for n in rows] == [
        ("queued", [f"http://{A}/img/other-campaign.jpg"]),
        ("sent", sorted(EXPECTED[A])),
    ]


def test_crash_mid_delivery_leaves_a_pending_notice_that_is_retried(
    store: Store, settings: Settings, world: World, smtp: tuple[Sink, int]
) -> None:
    sink, port = smtp
    with pytest.raises(RuntimeError):
        send_notices(store, settings, "test", notifier=Crashing(), now=T0)
    before = notices(store)
    assert [(h, n.status, n.attempts) for h, ns in before.items() for n in ns] == [
        (B, "pending", 0)  # hosts go in name order; the crash stopped the run at the first
    ]
    report = send(store, settings, port)
    assert (report.sent, report.no_contact) == (2, 1)
    after = notices(store)[B]
    assert [(n.id, n.status, n.attempts) for n in after] == [(before[B][0].id, "sent", 1)]


def test_defaults_come_from_settings(
    store: Store, settings: Settings, world: World, smtp: tuple[Sink, int]
) -> None:
    sink, port = smtp
    wired = settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": port})
    report = send_notices(store, wired, "test")
    assert report.sent == 2
    assert {e.mail_from for e in sink.envelopes} == {"notices@hotline.example"}


def test_malformed_contacts_file_fails_before_anything_is_sent(
    store: Store, settings: Settings, world: World, smtp: tuple[Sink, int]
) -> None:
    sink, port = smtp
    assert settings.contacts_file is not None
    settings.contacts_file.write_text('[hosts]\n"a" = ')
    with pytest.raises(ConfigError, match="contacts.toml"):
        send_notices(store, settings, "test", notifier=smtp_notifier(port))
    assert sink.envelopes == []
    assert count(store, Notice) == 0


def test_unknown_campaign(store: Store, settings: Settings, smtp: tuple[Sink, int]) -> None:
    with pytest.raises(UnknownCampaign):
        send(store, settings, smtp[1])


def test_outbox_is_a_preview(store: Store, settings: Settings, world: World) -> None:
    outbox = OutboxNotifier(Path(settings.data_dir) / "outbox")
    report = send_notices(store, settings, "test", notifier=outbox, now=T0 + timedelta(hours=1))
    assert report.sent == 3  # previewed, including the host without a contact
    assert notices(store) == {}  # a preview marks nothing as sent
    names = {p.stem for p in (Path(settings.data_dir) / "outbox").iterdir()}
    assert names == {notice_reference(h, sorted(urls), 0) for h, urls in EXPECTED.items()}


def test_resolver_can_be_passed_in(
    store: Store, settings: Settings, world: World, smtp: tuple[Sink, int], tmp_path: Path
) -> None:
    sink, port = smtp
    alt = tmp_path / "alt.toml"
    alt.write_text('[hosts]\n"nobody.test" = "abuse@nobody.example"\n')
    report = send(store, settings, port, resolver=OverridesResolver(alt))
    assert (report.sent, report.no_contact) == (1, 2)
    assert [e.rcpt_tos for e in sink.envelopes] == [["abuse@nobody.example"]]
