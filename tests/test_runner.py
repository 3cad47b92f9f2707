"""`arachne run` orchestration: it ends, and says why, whatever its children do."""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from arachne import runner
from arachne.queue.connection import image_queue
from arachne.queue.enqueue import Enqueuer, ImageRef
from arachne.settings import Settings
from arachne.store.campaigns import create_campaign
from arachne.store.db import Store
from arachne.store.summary import get_campaign


@dataclass
class World:
    """A store holding campaign "c", and the test Redis."""

    settings: Settings
    store: Store
    redis: Redis
    redis_url: str

    def run(self, workers: int) -> dict[str, Any]:
        return runner.run_campaign(
            self.settings, self.store, self.redis, self.redis_url, "c", workers=workers,
            interval=0.05,
        )  # fmt: skip


@pytest.fixture
def world(tmp_path: Path, redis_url: str, redis_client: Redis) -> World:
    settings = Settings(data_dir=tmp_path, redis_url=redis_url)
    store = Store.open(settings)
    with store.session() as s:
        create_campaign(s, "c", ["http://127.0.0.1/"], {})
    return World(settings, store, redis_client, redis_url)


def _fake_spawn(worker_code: int):
    def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        code = 0 if args[0] == "crawl" else worker_code  # the crawl "finishes" at once
        return subprocess.Popen([sys.executable, "-c", f"raise SystemExit({code})"])

    return spawn


def test_workers_dying_at_start_end_the_run_instead_of_looping(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    enq = Enqueuer(world.redis, image_queue(world.redis, world.settings), "c")
    enq.add([ImageRef("http://127.0.0.1:9/a.jpg", None, "c")])
    enq.flush()
    monkeypatch.setattr(runner, "_spawn", _fake_spawn(worker_code=3))
    with pytest.raises(runner.WorkerCrashLoop, match="died within"):
        world.run(workers=2)
    with world.store.session() as s:
        assert get_campaign(s, "c").status == "failed"
    assert image_queue(world.redis, world.settings).count == 1, "queued work is kept"


def test_run_with_nothing_to_do_finishes_done(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "_spawn", _fake_spawn(worker_code=0))
    summary = world.run(workers=1)
    assert summary["status"] == "done" and summary["crawl_exit_code"] == 0


def test_ctrl_c_during_a_spawn_stops_that_child_too(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    children: list[subprocess.Popen[bytes]] = []

    def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        children.append(proc)
        if args[0] == "worker":  # Ctrl-C lands after the fork, before the caller has it
            signal.raise_signal(signal.SIGINT)
        return proc

    monkeypatch.setattr(runner, "_spawn", spawn)
    # Python's own Ctrl-C handler, as `arachne run` has it (conftest restores the one before).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with pytest.raises(KeyboardInterrupt):
        world.run(workers=2)
    assert len(children) == 2, "the interrupt stopped the spawning"
    assert all(proc.poll() is not None for proc in children), "no child outlives the run"
    with world.store.session() as s:
        assert get_campaign(s, "c").status == "stopped"
