"""A shared world for the notices-loop tests: three loopback image hosts, a known list of
their benign generated pictures, matches recorded by the workers' own batch job, aiosmtpd.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from redis import Redis
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from arachne.demo.mailbox import Mailbox
from arachne.notices.contacts import NO_CONTACT, Contact
from arachne.notices.schedule import run_due
from arachne.notices.send import send_notices
from arachne.queue import jobs
from arachne.settings import Settings
from arachne.store.campaigns import create_campaign
from arachne.store.db import Store
from arachne.store.hashlists import import_list
from arachne.store.models import Incident, Notice
from tests.conftest import drop_postgres_database, fresh_postgres_database
from tests.imageserver import make_image, serve

# The simulated clock starts after the (real-time) sightings the fixture records.
T0 = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
HOUR = 3600
IPS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
ABUSE = {
    "127.0.0.2": "abuse@hosting-a.example",
    "127.0.0.3": "abuse@hosting-b.example",
    "127.0.0.4": "abuse@hosting-c.example",
}
REGISTRAR = "abuse@registrar.example"
UPSTREAM = "abuse@upstream.example"


class Resolver:
    """The ContactResolver seam: a provider per host, with an upstream and a registrar to
    escalate to (what RDAP gives; the contacts tests cover RDAP itself)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def resolve(self, hostname: str, ip: str | None) -> Contact:
        self.calls[hostname] += 1
        email = ABUSE.get(hostname)
        if email is None:
            return NO_CONTACT
        return Contact(
            email=email,
            source="rdap",
            provider=f"Hosting {hostname[-1]}",
            country="NL" if hostname == "127.0.0.2" else "US",
            escalation=(
                Contact(email=UPSTREAM, source="rdap", provider="Upstream Transit"),
                Contact(email=REGISTRAR, source="registrar", provider="Example Registrar"),
            ),
        )


@dataclass
class World:
    settings: Settings
    store: Store
    mailbox: Mailbox
    routes: dict[str, dict[str, tuple[int, str, bytes]]]  # host ip -> path -> response
    bases: dict[str, str]
    resolver: Resolver

    def url(self, ip: str, n: int) -> str:
        return f"{self.bases[ip]}/img/{n}.jpg"

    def take_down(self, ip: str, n: int, status: int = 404, body: bytes = b"gone") -> None:
        ctype = "image/png" if body.startswith(b"\x89PNG") else "text/html"
        self.routes[ip][f"/img/{n}.jpg"] = (status, ctype, body)

    def restore(self, ip: str, n: int) -> None:
        self.routes[ip][f"/img/{n}.jpg"] = (200, "image/jpeg", picture(ip, n))

    def tick(self, at: datetime) -> dict[str, Any]:
        return run_due(self.store, self.settings, now=at, resolver=self.resolver)

    def send(self, at: datetime, **kw: Any) -> Any:
        return send_notices(self.store, self.settings, "loop", resolver=self.resolver, now=at, **kw)

    def incident(self, ip: str, n: int) -> Incident:
        with self.store.session() as session:
            inc = session.scalar(select(Incident).where(Incident.url == self.url(ip, n)))
            assert inc is not None
            return inc

    def notices(self) -> list[Notice]:
        with self.store.session() as session:
            stmt = select(Notice).options(selectinload(Notice.host)).order_by(Notice.id)
            return list(session.scalars(stmt))


def picture(ip: str, n: int) -> bytes:
    return make_image(IPS.index(ip) * 10 + n, size=(320, 240))


def flat_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (180, 180, 180)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(params=["sqlite", "postgresql"])
def world(
    request: pytest.FixtureRequest, tmp_path: Path, redis_url: str, redis_client: Redis
) -> Iterator[World]:
    """The same world on the embedded SQLite store and on a private PostgreSQL database."""
    database_url = None
    pg_name = f"arachne_loop_{uuid.uuid4().hex[:12]}"
    if request.param == "postgresql":
        database_url = fresh_postgres_database(pg_name)
    try:
        yield from _world(tmp_path, redis_url, redis_client, database_url)
    finally:
        if database_url:
            drop_postgres_database(pg_name)


def _world(
    tmp_path: Path, redis_url: str, redis_client: Redis, database_url: str | None
) -> Iterator[World]:
    routes = {
        ip: {f"/img/{n}.jpg": (200, "image/jpeg", picture(ip, n)) for n in range(4)} for ip in IPS
    }
    with ExitStack() as stack:
        bases = {ip: stack.enter_context(serve(routes[ip], host=ip)) for ip in IPS}
        mailbox = stack.enter_context(Mailbox())
        settings = Settings(
            data_dir=tmp_path,
            redis_url=redis_url,
            database_url=database_url,
            allow_private_networks=True,
            reporter_org="Test Hotline",
            reporter_email="reports@hotline.example",
            smtp_from="notices@hotline.example",
            smtp_host="127.0.0.1",
            smtp_port=mailbox.port,
            smtp_timeout=5,
            fetch_timeout=3,
            recheck_interval=6 * HOUR,
            renotice_interval=24 * HOUR,
            escalate_after=3,
            recheck_failures_removed=3,
        )
        store = Store.open(settings)
        # The known list: MD5s of three of each host's four pictures (benign, generated).
        listed = [picture(ip, n) for ip in IPS for n in range(3)]
        known = tmp_path / "known.txt"
        known.write_text("".join(f"md5 {hashlib.md5(b).hexdigest()}\n" for b in listed))
        import_list(store, "known", known)
        with store.session() as session:
            create_campaign(session, "loop", [bases[IPS[0]] + "/"], {"allowed_hosts": list(IPS)})
        jobs.set_context(jobs.WorkerContext(settings, redis_client, store))
        try:
            refs = [
                {"url": f"{bases[ip]}/img/{n}.jpg", "page": f"{bases[ip]}/p.html"}
                for ip in IPS
                for n in range(4)
            ]
            jobs.process_batch("loop", refs)  # the workers' own fetch -> hash -> match -> record
        finally:
            jobs.set_context(None)
        yield World(settings, store, mailbox, routes, bases, Resolver())
        store.dispose()
