"""Notices until removal: incidents, re-checks, reminders, escalation, time to removal.

Everything real on loopback: three image hosts (127.0.0.2-4) serving benign generated
pictures, the workers' own batch job to fetch, hash and match them, aiosmtpd receiving the
notices, and an injected clock so a week of 6-hourly re-checks runs in seconds.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from arachne.demo.mailbox import Mailbox, free_port
from arachne.notices.recheck import recheck_incidents
from arachne.notices.schedule import run_due
from arachne.notices.send import send_notices
from arachne.notices.stats import removal_stats
from arachne.store.models import Incident, Recheck
from tests.notices_world import (
    ABUSE,
    HOUR,
    IPS,
    REGISTRAR,
    T0,
    UPSTREAM,
    World,
    flat_png,
)


def listed_urls(body: str) -> set[str]:
    return set(re.findall(r"^\s+\[\d+\] (\S+)\r?$", body, flags=re.MULTILINE))


def test_first_notices_open_incidents_and_mark_them_noticed(world: World) -> None:
    report = world.send(T0)
    assert (report.hosts, report.sent, report.failed, report.no_contact) == (3, 3, 0, 0)
    assert sorted(rcpt for _, (rcpt,) in world.mailbox.envelopes) == sorted(ABUSE.values())
    with world.store.session() as session:
        incidents = list(session.scalars(select(Incident)))
    assert len(incidents) == 9  # 3 listed pictures x 3 hosts; the 4th of each is clean
    assert {i.state for i in incidents} == {"noticed"}
    assert {i.first_noticed_at for i in incidents} == {T0}
    assert {i.next_notice_at for i in incidents} == {T0 + timedelta(hours=24)}
    for msg in world.mailbox.messages:
        body = msg.get_payload()[0].get_payload(decode=True).decode()
        host = next(ip for ip in IPS if ABUSE[ip] == msg["To"])
        assert listed_urls(body) == {world.url(host, n) for n in range(3)}
    # Safe to repeat: nothing is due until the reminder time.
    again = world.send(T0 + timedelta(hours=1))
    assert again.sent == 0 and len(world.mailbox.messages) == 3


def test_recheck_finds_404_410_451_changed_and_soft_404_as_removed(world: World) -> None:
    world.send(T0)
    a, b, c = IPS
    world.take_down(a, 0, 404)
    world.take_down(a, 1, 410)
    world.take_down(b, 0, 451)
    world.take_down(b, 1, 200, flat_png())  # a placeholder picture where the image was
    world.take_down(c, 0, 200, b"<html>This image was removed</html>")  # soft 404
    report = recheck_incidents(world.store, world.settings, "loop", now=T0 + timedelta(hours=6))
    assert report.checked == 9
    assert report.outcomes == Counter({"removed": 5, "up": 4})
    reasons = {r["url"]: r["reason"] for r in report.results if r["outcome"] == "removed"}
    assert reasons == {
        world.url(a, 0): "http_404",
        world.url(a, 1): "http_410",
        world.url(b, 0): "http_451",
        world.url(b, 1): "changed",
        world.url(c, 0): "not_an_image",
    }
    gone = world.incident(a, 0)
    assert (gone.state, gone.removal_seconds) == ("removed", 6 * HOUR)
    with world.store.session() as session:
        assert session.query(Recheck).count() == 9


def test_timeouts_and_5xx_count_as_removed_only_when_they_persist(world: World) -> None:
    world.send(T0)
    ip = IPS[2]
    world.take_down(ip, 0, 503)
    for k in (1, 2):
        recheck_incidents(world.store, world.settings, now=T0 + timedelta(hours=6 * k))
        assert world.incident(ip, 0).state == "noticed", f"removed after {k} 5xx"
    world.restore(ip, 0)  # it was only a blip: the streak starts again
    recheck_incidents(world.store, world.settings, now=T0 + timedelta(hours=18))
    assert world.incident(ip, 0).failures == 0
    world.take_down(ip, 0, 500)
    for k in (4, 5, 6):
        recheck_incidents(world.store, world.settings, now=T0 + timedelta(hours=6 * k))
    inc = world.incident(ip, 0)
    assert (inc.state, inc.removal_reason) == ("removed", "unreachable:http_500")
    assert inc.removed_at == T0 + timedelta(hours=24)  # dated from the first failing check
    assert inc.removal_seconds == 24 * HOUR


def test_nxdomain_counts_as_removed(world: World) -> None:
    world.send(T0)
    with world.store.session() as session:
        inc = session.scalar(select(Incident).order_by(Incident.id))
        assert inc is not None
        inc.url = "http://removed-host.invalid/img/0.jpg"
    report = recheck_incidents(world.store, world.settings, now=T0 + timedelta(hours=6))
    gone = [r for r in report.results if r["url"].startswith("http://removed-host.invalid")]
    assert [(r["outcome"], r["reason"]) for r in gone] == [("removed", "nxdomain")]


def test_a_simulated_week(world: World) -> None:
    """28 ticks 6 h apart: reminders every 24 h while up, escalation after 3 notices per
    tier, removals at known times, and the time-to-removal figures they give."""
    a, b, c = IPS
    world.send(T0)
    events = {
        1: [(a, 0, 404)],  # gone before the first check: 6 h
        5: [(b, 0, 410), (b, 1, 404)],  # gone before the check at 30 h
        13: [(a, 1, 404)],  # 78 h
    }
    sent_per_tick: dict[int, list[tuple[str, str]]] = {}
    for k in range(1, 29):
        for ip, n, status in events.get(k, []):
            world.take_down(ip, n, status)
        before = len(world.mailbox.envelopes)
        world.tick(T0 + timedelta(hours=6 * k))
        new = world.mailbox.envelopes[before:]
        sent_per_tick[k] = [(rcpt, "") for _, (rcpt,) in new]

    # Reminders only every 4th tick (24 h), one per host with content still up.
    reminder_ticks = sorted(k for k, sent in sent_per_tick.items() if sent)
    assert reminder_ticks == [4, 8, 12, 16, 20, 24, 28]
    notices = world.notices()
    cycles = Counter((n.host.hostname, n.cycle) for n in notices if n.status == "sent")
    # Host C never removes anything: first notice + a reminder each day of the week.
    assert sorted(c_ for (h, c_) in cycles if h == c) == list(range(8))
    # Escalation: 3 notices to the provider, 3 to the upstream, then the registrar.
    tiers = [(n.cycle, n.tier, n.recipient) for n in notices if n.host.hostname == c]
    assert [t for _, t, _ in tiers] == [0, 0, 0, 1, 1, 1, 2, 2]
    assert {r for cyc, _, r in tiers if cyc >= 6} == {REGISTRAR}
    assert {r for cyc, _, r in tiers if 3 <= cyc < 6} == {UPSTREAM}
    # A reminder says it is one, with the first notice's reference.
    first_c = next(n for n in notices if n.host.hostname == c and n.cycle == 0)
    reminder = next(n for n in notices if n.host.hostname == c and n.cycle == 1)
    assert reminder.kind == "reminder" and reminder.first_reference == first_c.reference
    assert first_c.reference in reminder.body
    # Host B's two removed URLs are no longer in its reminders after 30 h.
    b_late = [n for n in notices if n.host.hostname == b and n.cycle >= 2]
    assert b_late and all(set(n.urls) == {world.url(b, 2)} for n in b_late)

    with world.store.session() as session:
        stats = removal_stats(session, world.settings, "loop")
    assert (stats["incidents"], stats["removed"], stats["still_up"]) == (9, 4, 5)
    assert stats["median_seconds"] == 30 * HOUR  # 6 h, 30 h, 30 h, 78 h
    assert stats["p90_seconds"] == 78 * HOUR
    assert stats["pct_within_24h"] == round(100 * 1 / 9, 1)
    assert stats["by_provider"]["Hosting 2"]["median_seconds"] == 6 * HOUR
    assert stats["by_country"]["US"]["removed"] == 2


def test_smtp_down_the_notice_stays_queued_and_goes_out_once(world: World) -> None:
    port = free_port()
    down = world.settings.model_copy(update={"smtp_port": port})
    report = send_notices(world.store, down, "loop", resolver=world.resolver, now=T0)
    assert (report.sent, report.failed) == (0, 3)
    statuses = {n.status for n in world.notices()}
    assert statuses == {"queued"}
    assert all(
        "refused" in (n.last_error or "").lower() or str(port) in (n.last_error or "")
        for n in world.notices()
    )
    # The schedule waits out the back-off, then retries; still down: still queued.
    run_due(world.store, down, now=T0 + timedelta(seconds=30), resolver=world.resolver)
    assert {n.attempts for n in world.notices()} == {1}
    run_due(world.store, down, now=T0 + timedelta(minutes=2), resolver=world.resolver)
    assert {(n.status, n.attempts) for n in world.notices()} == {("queued", 2)}
    # The server is back on that port: each notice goes out exactly once.
    with Mailbox(port=port) as back:
        for minutes in (10, 20):
            run_due(world.store, down, now=T0 + timedelta(minutes=minutes), resolver=world.resolver)
        assert sorted(rcpt for _, (rcpt,) in back.envelopes) == sorted(ABUSE.values())
    assert {(n.status, n.attempts) for n in world.notices()} == {("sent", 3)}
    assert world.incident(IPS[0], 0).first_noticed_at == T0 + timedelta(minutes=10)


def test_reappeared_content_is_reopened_and_noticed_again(world: World) -> None:
    ip = IPS[0]
    world.send(T0)
    world.take_down(ip, 0, 404)
    world.tick(T0 + timedelta(hours=6))
    assert world.incident(ip, 0).state == "removed"
    world.restore(ip, 0)
    # Removed URLs are watched (every 4 re-check intervals) for a while.
    world.tick(T0 + timedelta(hours=12))
    assert world.incident(ip, 0).state == "removed", "not due for its watch check yet"
    world.tick(T0 + timedelta(hours=30))
    inc = world.incident(ip, 0)
    assert (inc.state, inc.reappeared) == ("noticed", 1)
    # Noticed again in the same tick, with the host's reminders of that cycle.
    again = [n for n in world.notices() if world.url(ip, 0) in n.urls and n.cycle == 1]
    assert [n.status for n in again] == ["sent"]
    # Host A is in NL: the Dutch body says the content came back.
    assert "verwijderd, maar is opnieuw bereikbaar" in again[0].body
    assert inc.removal_seconds == 6 * HOUR  # the first removal keeps its figure


def test_dry_run_and_outbox_are_previews(world: World, tmp_path: Path) -> None:
    from arachne.notices.deliver import OutboxNotifier

    dry = world.send(T0, dry_run=True)
    assert len(dry.previews) == 3 and world.mailbox.messages == []
    assert world.notices() == []
    outbox = OutboxNotifier(tmp_path / "outbox")
    world.send(T0, notifier=outbox)
    assert len(list((tmp_path / "outbox").iterdir())) == 3
    assert world.notices() == [] and world.mailbox.messages == []
    assert {world.incident(ip, 0).state for ip in IPS} == {"open"}
    real = world.send(T0)
    assert real.sent == 3


def test_no_contact_is_visible_with_its_reason_and_retried(world: World) -> None:
    del ABUSE["127.0.0.4"]
    try:
        report = world.send(T0)
        outcome = next(o for o in report.notices if o["host"] == "127.0.0.4")
        assert outcome["status"] == "no_contact" and outcome["error"]
        ABUSE["127.0.0.4"] = "abuse@hosting-c.example"
        again = world.send(T0 + timedelta(minutes=5))
        assert [o["status"] for o in again.notices if o["host"] == "127.0.0.4"] == ["sent"]
    finally:
        ABUSE["127.0.0.4"] = "abuse@hosting-c.example"


def test_notices_send_sends_the_reminders_that_are_due(world: World) -> None:
    """The operator's send does what the schedule does for reminders (no worker needed)."""
    world.send(T0)
    early = world.send(T0 + timedelta(hours=23))
    assert early.sent == 0
    due = world.send(T0 + timedelta(hours=24))
    assert due.sent == 3
    assert {(o["kind"], o["cycle"]) for o in due.notices} == {("reminder", 1)}
    assert len(world.mailbox.messages) == 6
    subjects = {str(m["To"]): str(m["Subject"]) for m in world.mailbox.messages[3:]}
    assert subjects[ABUSE[IPS[0]]].startswith("Herinnering 1:")  # a provider in NL: Dutch
    assert subjects[ABUSE[IPS[1]]].startswith("Reminder 1:")
