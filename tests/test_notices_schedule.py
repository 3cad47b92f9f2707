"""Re-checks and reminders run on their own while a worker runs: no cron, one tick chain."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

from redis import Redis
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select

from arachne.demo.mailbox import Mailbox
from arachne.notices.contacts import normalise_host
from arachne.notices.schedule import ensure_tick, notices_queue, release_tick
from arachne.notices.send import send_notices
from arachne.queue import jobs, keys
from arachne.settings import Settings
from arachne.store.campaigns import create_campaign
from arachne.store.db import Store
from arachne.store.hashlists import import_list
from arachne.store.models import Incident, Notice
from tests.imageserver import make_image, serve


def test_one_tick_chain_however_many_workers_ask(tmp_path: Path, redis_client: Redis) -> None:
    settings = Settings(data_dir=tmp_path, notices_tick_interval=30)
    first = ensure_tick(redis_client, settings)
    assert first is not None
    assert ensure_tick(redis_client, settings) is None  # a second worker starting
    registry = ScheduledJobRegistry(queue=notices_queue(redis_client, settings))
    assert registry.get_job_ids() == [first]
    # A stray tick (not the owner) must not start a second chain.
    assert release_tick(redis_client, "notices-tick-someone-else") is False
    assert redis_client.get(keys.notices_tick()) == first.encode()
    assert release_tick(redis_client, first) is True
    assert ensure_tick(redis_client, settings) is not None


def test_worker_rechecks_and_reminds_on_its_own(
    tmp_path: Path, redis_url: str, redis_client: Redis
) -> None:
    picture = make_image(7, size=(320, 240))
    routes = {"/a.jpg": (200, "image/jpeg", picture)}
    with serve(routes, host="127.0.0.2") as base, Mailbox() as mailbox:
        contacts = tmp_path / "contacts.toml"
        contacts.write_text('[hosts]\n"127.0.0.2" = "abuse@hosting-a.example"\n')
        settings = Settings(
            data_dir=tmp_path,
            redis_url=redis_url,
            allow_private_networks=True,
            contacts_file=contacts,
            reporter_org="Test Hotline",
            smtp_from="notices@hotline.example",
            smtp_port=mailbox.port,
            recheck_interval=1,
            renotice_interval=2,
            notices_tick_interval=1,
        )
        store = Store.open(settings)
        known = tmp_path / "known.txt"
        known.write_text(f"md5 {hashlib.md5(picture).hexdigest()}\n")
        import_list(store, "known", known)
        with store.session() as session:
            create_campaign(session, "auto", [base + "/"], {"allowed_hosts": ["127.0.0.2"]})
        jobs.set_context(jobs.WorkerContext(settings, redis_client, store))
        try:
            jobs.process_batch("auto", [{"url": base + "/a.jpg", "page": base + "/"}])
        finally:
            jobs.set_context(None)
        assert send_notices(store, settings, "auto").sent == 1

        worker = subprocess.Popen(
            [sys.executable, "-m", "arachne", "worker"],
            env=settings.child_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            # Still up: the worker's schedule sends a reminder without anyone asking.
            deadline = time.monotonic() + 60
            while len(mailbox.messages) < 2 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert len(mailbox.messages) >= 2, "no reminder from the worker's schedule"
            assert "Reminder" in str(mailbox.messages[1]["Subject"])
            routes["/a.jpg"] = (404, "text/plain", b"gone")
            state = None
            while time.monotonic() < deadline:
                with store.session() as session:
                    inc = session.scalar(select(Incident))
                    state = inc.state if inc else None
                if state == "removed":
                    break
                time.sleep(0.5)
            assert state == "removed", "the worker's schedule never re-checked"
        finally:
            worker.terminate()
            _, err = worker.communicate(timeout=30)
        with store.session() as session:
            sent = session.scalars(select(Notice).where(Notice.status == "sent")).all()
            inc = session.scalar(select(Incident))
        assert inc is not None and inc.removal_seconds is not None
        assert len(sent) == len(mailbox.messages)
        assert normalise_host("127.0.0.2") == inc.host
        assert b"Traceback" not in err, err.decode(errors="replace")[-2000:]
