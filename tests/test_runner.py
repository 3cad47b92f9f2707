"""`arachne run` orchestration: it ends, and says why, whatever its children do."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from redis import Redis

from arachne import runner
from arachne.queue.connection import image_queue
from arachne.queue.enqueue import Enqueuer, ImageRef
from arachne.settings import Settings
from arachne.store.campaigns import create_campaign
from arachne.store.db import Store
from arachne.store.summary import get_campaign


def _fake_spawn(worker_code: int):
    def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        code = 0 if args[0] == "crawl" else worker_code  # the crawl "finishes" at once
        return subprocess.Popen([sys.executable, "-c", f"raise SystemExit({code})"])

    return spawn


def test_workers_dying_at_start_end_the_run_instead_of_looping(
    tmp_path: Path, redis_url: str, redis_client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=tmp_path, redis_url=redis_url)
    store = Store.open(settings)
    with store.session() as s:
        create_campaign(s, "c", ["http://127.0.0.1/"], {})
    enq = Enqueuer(redis_client, image_queue(redis_client, settings), "c")
    enq.add([ImageRef("http://127.0.0.1:9/a.jpg", None, "c")])
    enq.flush()
    monkeypatch.setattr(runner, "_spawn", _fake_spawn(worker_code=3))
    with pytest.raises(runner.WorkerCrashLoop, match="died within"):
        runner.run_campaign(settings, store, redis_client, redis_url, "c", workers=2, interval=0.05)
    with store.session() as s:
        assert get_campaign(s, "c").status == "failed"
    assert image_queue(redis_client, settings).count == 1, "queued work is kept"


def test_run_with_nothing_to_do_finishes_done(
    tmp_path: Path, redis_url: str, redis_client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=tmp_path, redis_url=redis_url)
    store = Store.open(settings)
    with store.session() as s:
        create_campaign(s, "c", ["http://127.0.0.1/"], {})
    monkeypatch.setattr(runner, "_spawn", _fake_spawn(worker_code=0))
    summary = runner.run_campaign(
        settings, store, redis_client, redis_url, "c", workers=1, interval=0.05
    )
    assert summary["status"] == "done" and summary["crawl_exit_code"] == 0


def test_ctrl_c_during_a_spawn_stops_that_child_too(
    tmp_path: Path, redis_url: str, redis_client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=tmp_path, redis_url=redis_url)
    store = Store.open(settings)
    with store.session() as s:
        create_campaign(s, "c", ["http://127.0.0.1/"], {})
    children: list[subprocess.Popen[bytes]] = []

    def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        children.append(proc)
        if args[0] == "worker":  # Ctrl-C lands after the fork, before the caller has it
            signal.raise_signal(signal.SIGINT)
        return proc

    monkeypatch.setattr(runner, "_spawn", spawn)
    # Python's own Ctrl-C handler, as `arachne run` has it (an in-process rq worker test may
    # have left rq's in this process).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            runner.run_campaign(
                settings, store, redis_client, redis_url, "c", workers=2, interval=0.05
            )
    finally:
        signal.signal(signal.SIGINT, previous)
    assert len(children) == 2, "the interrupt stopped the spawning"
    assert all(proc.poll() is not None for proc in children), "no child outlives the run"
    with store.session() as s:
        assert get_campaign(s, "c").status == "stopped"
