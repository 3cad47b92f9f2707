"""The notices loop under pressure: concurrent senders, a URL no XARF report can carry,
oversized registry data, a bouncing abuse address, retracted entries, stale queued notices,
and "no contact" answers that must be asked again."""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from sqlalchemy import select, update

from arachne.demo.mailbox import free_port
from arachne.demo.rdap import RdapData, RdapServerThread, write_bootstrap
from arachne.demo.rdap_shapes import afrinic_network, ripe_network
from arachne.notices.contacts import Contact, default_resolver, normalise_host
from arachne.notices.hosts import upsert_host
from arachne.notices.recheck import recheck_incidents
from arachne.notices.schedule import run_due
from arachne.notices.send import send_notices
from arachne.notices.stats import removal_stats
from arachne.queue.fetch import FetchConfig, fetch_many
from arachne.settings import Settings
from arachne.store.models import HashEntry, Host, Incident
from tests.conftest import drop_postgres_database, open_test_store
from tests.notices_world import ABUSE, IPS, T0, UPSTREAM, World


def test_two_senders_at_once_send_each_notice_once(world: World) -> None:
    reports: list[Any] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            reports.append(world.send(T0))
        except BaseException as exc:  # surfaced below: a crash is a failure
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(r.sent for r in reports) == [0, 3]
    assert len(world.mailbox.messages) == 3
    with world.store.session() as session:
        assert {i.notices_sent for i in session.scalars(select(Incident))} == {1}


def test_the_schedule_stands_aside_while_another_run_works(world: World) -> None:
    with world.store.exclusive("notices"):
        assert world.tick(T0 + timedelta(days=2))["busy"] is True
    assert world.mailbox.messages == []


def test_a_url_no_xarf_report_can_carry_is_left_out_not_fatal(world: World) -> None:
    bad = f"{world.bases[IPS[0]]}/img/%zz.jpg"  # an invalid percent-escape
    with world.store.session() as session:
        from arachne.notices.incidents import sync_incidents

        sync_incidents(session, world.settings, T0)
        inc = session.scalar(select(Incident).where(Incident.url == world.url(IPS[0], 0)))
        assert inc is not None
        inc.url = bad
    report = world.send(T0)
    invalid = [o for o in report.notices if o["status"] == "invalid"]
    assert [o["url"] for o in invalid] == [bad] and invalid[0]["error"]
    assert report.sent == 3  # every host still got its notice, host A without the bad URL
    sent_a = [n for n in world.notices() if n.host.hostname == IPS[0]]
    assert len(sent_a) == 1 and bad not in sent_a[0].urls and len(sent_a[0].urls) == 2


def test_oversized_registry_data_is_cut_to_fit_on_postgresql(tmp_path: Path) -> None:
    db = f"arachne_robust_{uuid.uuid4().hex[:10]}"
    store = open_test_store("postgresql", tmp_path, db)
    try:
        contact = Contact(
            email="abuse@hosting.example",
            source="rdap",
            provider="P" * 250,
            network="2001:0db8:0000:0000:0000:0000:0000:0000 - "
            "2001:0db8:ffff:ffff:ffff:ffff:ffff:ffff",  # a range, not a CIDR: 81 characters
            country="NLD",
        )
        with store.session() as session:
            upsert_host(session, "images.example", "192.0.2.1", contact, T0)
        with store.session() as session:
            host = session.scalar(select(Host))
            assert host is not None
            assert (len(host.provider or ""), host.country) == (200, "NL")
            assert host.network is not None and len(host.network) == 64
    finally:
        store.dispose()
        drop_postgres_database(db)


class Bouncer:
    """aiosmtpd handler: one address refused for good (550), the rest accepted."""

    def __init__(self, refused: str) -> None:
        self.refused = refused
        self.accepted: list[str] = []

    async def handle_RCPT(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address == self.refused:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.accepted.extend(envelope.rcpt_tos)
        return "250 OK"


def test_a_bouncing_abuse_address_escalates_to_the_next_tier(world: World) -> None:
    port = free_port()
    bouncer = Bouncer(ABUSE[IPS[0]])
    controller = Controller(bouncer, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        settings = world.settings.model_copy(update={"smtp_port": port})
        first = send_notices(world.store, settings, "loop", resolver=world.resolver, now=T0)
        assert [o["status"] for o in first.notices if o["host"] == IPS[0]] == ["failed"]
        run_due(world.store, settings, now=T0 + timedelta(minutes=1), resolver=world.resolver)
    finally:
        controller.stop()
    assert UPSTREAM in bouncer.accepted, "the refused provider's notice never moved on"
    row = next(n for n in world.notices() if n.host.hostname == IPS[0])
    assert (row.status, row.tier, row.recipient) == ("sent", 1, UPSTREAM)


def test_retracted_entries_close_the_incident_without_counting_a_removal(world: World) -> None:
    world.send(T0)
    with world.store.session() as session:
        inc = session.scalar(select(Incident).where(Incident.url == world.url(IPS[1], 0)))
        assert inc is not None
        session.execute(
            update(HashEntry).where(HashEntry.id.in_(inc.entry_ids)).values(deleted_at=T0)
        )
    report = recheck_incidents(world.store, world.settings, "loop", now=T0 + timedelta(hours=6))
    assert report.outcomes["retracted"] == 1 and report.outcomes["up"] == 8
    assert world.incident(IPS[1], 0).state == "retracted"
    with world.store.session() as session:
        stats = removal_stats(session, world.settings, "loop")
    assert (stats["incidents"], stats["retracted"], stats["removed"]) == (8, 1, 0)
    world.tick(T0 + timedelta(days=1))
    assert all(world.url(IPS[1], 0) not in n.urls for n in world.notices() if n.cycle == 1)


def test_a_queued_notice_whose_urls_are_gone_is_retired(world: World) -> None:
    down = world.settings.model_copy(update={"smtp_port": free_port()})
    send_notices(world.store, down, "loop", resolver=world.resolver, now=T0)
    assert {n.status for n in world.notices()} == {"queued"}
    for n in range(3):
        world.take_down(IPS[2], n, 404)
    recheck_incidents(world.store, down, "loop", now=T0 + timedelta(minutes=5), due_only=False)
    world.send(T0 + timedelta(minutes=10))
    by_host = {n.host.hostname: n for n in world.notices()}
    assert by_host[IPS[2]].status == "superseded"
    assert "removed or noticed" in (by_host[IPS[2]].last_error or "")
    assert by_host[IPS[0]].status == "sent" and by_host[IPS[1]].status == "sent"
    assert ABUSE[IPS[2]] not in {rcpt for _, (rcpt,) in world.mailbox.envelopes}


def test_no_contact_answers_are_asked_again_after_the_retry_delay(tmp_path: Path) -> None:
    clock = [T0]
    afrinic = afrinic_network("127.0.5.0/24", "Hosting E", "person@hosting-e.example")
    data = RdapData(networks={"127.0.5.0/24": afrinic})
    with RdapServerThread(data) as server:
        boot = write_bootstrap(tmp_path / "boot", server.url)
        settings = Settings(
            data_dir=tmp_path,
            rdap_bootstrap=str(boot),
            allow_private_networks=True,
            contact_retry_after=3600,
            rdap_cache_ttl=7 * 86400,
            rdap_timeout=3,
        )
        resolver = default_resolver(settings, now=lambda: clock[0])
        assert resolver.resolve("127.0.5.1", None).email is None
        assert resolver.resolve("127.0.5.1", None).email is None
        assert server.hits["/ip/127.0.5.1"] == 1  # the second answer came from the cache
        # The registry adds an abuse contact; an hour later it is asked again.
        data.networks["127.0.5.0/24"] = ripe_network(
            "127.0.5.0/24", "Hosting E", "abuse@hosting-e.example", "ZA"
        )
        clock[0] = T0 + timedelta(minutes=59)
        assert resolver.resolve("127.0.5.1", None).email is None
        clock[0] = T0 + timedelta(minutes=61)
        assert resolver.resolve("127.0.5.1", None).email == "abuse@hosting-e.example"
        assert server.hits["/ip/127.0.5.1"] == 2


def test_idn_hosts_are_looked_up_as_a_labels() -> None:
    assert normalise_host("Bücher.Example.") == "xn--bcher-kva.example"
    assert normalise_host("xn--bcher-kva.example") == "xn--bcher-kva.example"


def test_nxdomain_is_recognised_through_the_public_only_resolver() -> None:
    # The production path (allow_private off): a name that does not exist is an answer.
    result = asyncio.run(fetch_many(["http://removed-host.invalid/a.jpg"], FetchConfig()))
    assert result[0].error == "nxdomain"
