"""A worker killed mid-batch loses nothing: its job is retried and recorded exactly once."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from rq.registry import ScheduledJobRegistry, StartedJobRegistry
from sqlalchemy import func, select

from arachne.queue.connection import image_queue
from arachne.queue.enqueue import Enqueuer, ImageRef
from arachne.runner import maintain_queue, queue_state
from arachne.settings import Settings
from arachne.store.campaigns import create_campaign
from arachne.store.db import Store
from arachne.store.models import Sighting
from tests.imageserver import make_image, serve_slow

SpawnWorker = Callable[[Settings, bool], "subprocess.Popen[bytes]"]


@pytest.fixture
def spawn_worker() -> Iterator[SpawnWorker]:
    """`arachne worker` processes, each with its work horses in its own process group. Any
    still up when the test ends are killed: left running, they would take the next tests'
    jobs from the shared Redis."""
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(settings: Settings, burst: bool) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-m", "arachne", "worker"] + (["--burst"] if burst else [])
        procs.append(subprocess.Popen(args, env=settings.child_env(), start_new_session=True))
        return procs[-1]

    yield spawn
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_killed_worker_job_is_retried_and_recorded_once(
    tmp_path: Path, redis_url: str, redis_client: Redis, spawn_worker: SpawnWorker
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        redis_url=redis_url,
        fetch_timeout=30,
        retry_backoff=[1],
        allow_private_networks=True,
        # The killed worker's host slots stay taken until they expire (fetch timeout + 5 s):
        # more slots than a batch holds leave the rescuer some.
        per_host_concurrency=8,
    )
    store = Store.open(settings)
    with store.session() as s:
        create_campaign(s, "k", ["http://127.0.0.1/"], {"allowed_hosts": ["127.0.0.1"]})
    images = {f"/{i}.jpg": (200, "image/jpeg", make_image(i)) for i in range(12)}
    with serve_slow(images, delay=2.0) as base:
        queue = image_queue(redis_client, settings)
        enq = Enqueuer(redis_client, queue, "k", batch_size=6, retry_backoff=[1])
        enq.add([ImageRef(base + path, None, "k") for path in images])
        enq.flush()
        assert queue.count == 2

        victim = spawn_worker(settings, False)
        registry = StartedJobRegistry(queue=queue)
        deadline = time.monotonic() + 60
        while registry.count == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert registry.count == 1, "the worker never started a job"
        os.killpg(victim.pid, signal.SIGKILL)  # worker and its work horse, mid-batch
        victim.wait(10)

        # The job is stranded as "started" until rq sees its heartbeat expire (~90 s);
        # simulate that time passing instead of sleeping through it.
        assert registry.count == 1
        # simulate that time passing instead of sleeping through it.
        assert registry.count == 1
        assert maintain_queue(redis_client, settings, now=time.time() + 600) == 1
        assert registry.count == 0 and queue.count == 2, "abandoned job must be requeued"

        rescuer = spawn_worker(settings, True)
        assert rescuer.wait(120) == 0
    with store.session() as s:
        urls = list(s.scalars(select(Sighting.image_url)))
        errors = s.scalar(
            select(func.count()).select_from(Sighting).where(Sighting.error.is_not(None))
        )
    assert sorted(urls) == sorted(base + p for p in images), "every URL recorded exactly once"
    assert errors == 0
    state = queue_state(redis_client, settings)
    assert state.idle and state.failed == 0


def test_failed_batch_is_retried_with_backoff_not_dropped(
    tmp_path: Path, redis_url: str, redis_client: Redis
) -> None:
    from rq.registry import FailedJobRegistry

    from arachne.queue.worker import run_worker

    settings = Settings(data_dir=tmp_path, redis_url=redis_url)
    Store.open(settings).dispose()
    queue = image_queue(redis_client, settings)
    # The campaign row is missing (say the store was restored from an older backup):
    # the job fails, and must wait for a backed-off retry instead of being dropped.
    enq = Enqueuer(redis_client, queue, "missing", batch_size=10)
    enq.add([ImageRef("http://127.0.0.1:9/x.jpg", None, "missing")])
    enq.flush()
    (job,) = queue.get_jobs()
    run_worker(settings, redis_client, burst=True)
    scheduled = ScheduledJobRegistry(queue=queue)
    assert scheduled.get_job_ids() == [job.id]
    assert FailedJobRegistry(queue=queue).count == 0
    job.refresh()
    assert job.retries_left == settings.job_retries - 1
    wait = scheduled.get_scheduled_time(job).timestamp() - time.time()
    assert 0 < wait <= settings.retry_backoff[0] + 1
    state = queue_state(redis_client, settings)
    assert not state.idle and state.retrying == 1, "a waiting retry keeps the run open"


def test_high_priority_batches_are_taken_first(
    tmp_path: Path, redis_url: str, redis_client: Redis
) -> None:
    from arachne.queue.connection import image_queues
    from arachne.queue.worker import run_worker

    settings = Settings(data_dir=tmp_path, redis_url=redis_url, allow_private_networks=True)
    store = Store.open(settings)
    with store.session() as s:
        create_campaign(s, "routine", ["http://127.0.0.1/"], {})
        create_campaign(s, "urgent", ["http://127.0.0.1/"], {"priority": "high"})
    images = {f"/{i}.jpg": (200, "image/jpeg", make_image(i)) for i in range(4)}
    with serve_slow(images) as base:
        # The routine campaign queued first; the urgent one arrives later.
        for name, priority, paths in (
            ("routine", "normal", ["/0.jpg", "/1.jpg"]),
            ("urgent", "high", ["/2.jpg", "/3.jpg"]),
        ):
            queue = image_queue(redis_client, settings, priority)
            enq = Enqueuer(redis_client, queue, name, batch_size=1)
            enq.add([ImageRef(base + p, None, name) for p in paths])
            enq.flush()
        jobs = [j for q in image_queues(redis_client, settings) for j in q.get_jobs()]
        run_worker(settings, redis_client, burst=True)
    for job in jobs:
        job.refresh()
    finished = sorted(jobs, key=lambda j: j.ended_at)
    assert [j.args[0] for j in finished] == ["urgent", "urgent", "routine", "routine"]


def test_a_rematch_killed_mid_job_resumes_without_duplicates(
    tmp_path: Path, redis_url: str, redis_client: Redis, spawn_worker: SpawnWorker
) -> None:
    """A worker killed while matching a range records nothing of it (one transaction); the
    job is requeued like any batch, and the rescuer's matches are exactly the right ones."""
    import numpy as np

    from arachne.queue.rematch import Selection, enqueue_rematch
    from arachne.store.hashlists import import_list
    from arachne.store.models import Match
    from benchmarks.rematch import fill_store, planted_list

    settings = Settings(data_dir=tmp_path, redis_url=redis_url, retry_backoff=[1])
    store = Store.open(settings)
    rng = np.random.default_rng(5)
    words = fill_store(store, 60_000, rng)  # 60k images: a second or more of matching
    hexes = planted_list(words, 3_000, rng, most_flips=20)  # 30 planted: all within 31
    path = tmp_path / "l.txt"
    path.write_text("".join(f"pdq {h}\n" for h in hexes))
    import_list(store, "l", path)
    queue = image_queue(redis_client, settings)
    enqueue_rematch(store, redis_client, settings, Selection("l", 1, review=False), queue)
    assert queue.count == 1

    victim = spawn_worker(settings, False)
    registry = StartedJobRegistry(queue=queue)
    deadline = time.monotonic() + 60
    while registry.count == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert registry.count == 1, "the worker never started the rematch"
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(10)
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Match)) == 0  # nothing half-recorded
    assert maintain_queue(redis_client, settings, now=time.time() + 600) == 1
    rescuer = spawn_worker(settings, True)
    assert rescuer.wait(180) == 0
    with store.session() as s:
        pairs = s.execute(select(Match.sighting_id, Match.entry_id)).all()
    assert len(pairs) == len(set(pairs)) >= 30  # every planted entry found, none twice
    state = queue_state(redis_client, settings)
    assert state.idle and state.failed == 0


def test_a_stopping_worker_does_not_wait_on_its_pubsub_thread(redis_client: Redis) -> None:
    """redis-py 8.2's PubSubWorkerThread.stop() joins the thread, which after rq's
    unsubscribe could wait a minute for a subscription: the worker's stop must be prompt."""
    from rq.serializers import JSONSerializer

    from arachne.queue.worker import ArachneWorker

    def wait_for(condition: Any) -> None:
        deadline = time.monotonic() + 5
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.01)

    worker = ArachneWorker(["arachne-test-pubsub"], connection=redis_client,
                           serializer=JSONSerializer)  # fmt: skip
    worker.subscribe()
    wait_for(lambda: worker.pubsub.subscribed)
    unsubscribe = worker.pubsub.unsubscribe

    def unsubscribe_then_linger(*args: Any, **kwargs: Any) -> Any:
        # The race made certain: the thread takes the reply before the caller goes on,
        # and goes back to waiting (60 s) for a subscription.
        answer = unsubscribe(*args, **kwargs)
        wait_for(lambda: not worker.pubsub.subscribed)
        time.sleep(0.2)
        return answer

    worker.pubsub.unsubscribe = unsubscribe_then_linger  # type: ignore[method-assign]
    started = time.monotonic()
    worker.unsubscribe()
    assert time.monotonic() - started < 3
    assert not worker.pubsub_thread.is_alive()


def test_a_worker_killed_before_its_horse_marked_the_job_started_loses_nothing(
    redis_client: Redis, redis_url: str, tmp_path: Path
) -> None:
    """rq 3 registers the execution in the worker before the forked horse marks the job
    STARTED; killed in between, rq's own cleanup would drop the still-QUEUED job. Made
    certain here by doing the worker's half by hand (the kill -9 test above hits it by chance)."""
    from rq import Queue, Worker
    from rq.executions import prepare_execution
    from rq.job import JobStatus

    settings = Settings(data_dir=tmp_path, redis_url=redis_url)
    queue = image_queue(redis_client, settings)
    job = queue.enqueue("arachne.queue.jobs.process_batch", "c", [])
    worker = Worker([queue], connection=redis_client, serializer=queue.serializer)
    worker.register_birth()
    dequeued = Queue.dequeue_any([queue], None, connection=redis_client,
                                 serializer=queue.serializer)  # fmt: skip
    assert dequeued is not None and dequeued[0].id == job.id
    prepare_execution(worker, dequeued[0])  # ... and here the worker is killed
    registry = StartedJobRegistry(queue=queue)
    assert registry.count == 1 and job.get_status(refresh=True) == JobStatus.QUEUED
    assert queue.count == 0

    assert maintain_queue(redis_client, settings, now=time.time() + 600) == 1
    assert queue.job_ids == [job.id] and registry.count == 0
    assert redis_client.llen(queue.intermediate_queue_key) == 0  # not requeued a second time
    assert maintain_queue(redis_client, settings, now=time.time() + 600) == 0
