"""`arachne run`: one crawl process plus N worker processes, until the queue is drained.

Processes, not threads: Scrapy's reactor runs once per process, and each rq worker uses
one core for hashing. Children get the resolved Redis URL through their environment, so
they share the embedded Valkey this process started (or the external Redis).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from rq import Queue
from rq.intermediate_queue import IntermediateQueue
from rq.job import JobStatus
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from arachne.errors import ArachneError, CampaignBusy
from arachne.queue import keys
from arachne.queue import stats as st
from arachne.queue.connection import image_queues
from arachne.settings import Settings
from arachne.store.campaigns import set_status, snapshot_stats
from arachne.store.db import Store
from arachne.store.runs import end_run, known_bad_hosts, open_run
from arachne.store.summary import campaign_summary

ProgressFn = Callable[[dict[str, Any]], None]

WORKER_DEATH_WINDOW = 60.0
"""Seconds over which worker deaths are counted by the crash-loop guard."""
WORKER_DEATHS_MAX = 3
"""Deaths per worker slot within the window before `arachne run` gives up."""
END_POLL = 0.2
"""Seconds between checks whether the run is over (and its workers alive)."""


class WorkerCrashLoop(ArachneError):
    """Workers keep dying as they start; respawning them would loop forever."""


@dataclass
class QueueState:
    queued: int
    running: int
    failed: int
    retrying: int = 0  # failed batches waiting for their backed-off retry

    @property
    def idle(self) -> bool:
        return self.queued == 0 and self.running == 0 and self.retrying == 0


def maintain_queue(redis: Redis, settings: Settings, now: float | None = None) -> int:
    """Requeue batches of dead workers and enqueue retries that are due; returns how many.

    A worker killed mid-job stops heart-beating; about 90 s later rq counts its job as
    abandoned and schedules a retry. rq's own maintenance runs only every 10 minutes, and
    a dead worker's scheduler lock delays due retries for minutes more, so the runner does
    both itself. ZREM decides who moves a due job, so a concurrent rq scheduler can't
    enqueue it twice (and a batch is idempotent anyway).
    """
    timestamp = time.time() if now is None else now
    return sum(_maintain(redis, queue, timestamp, now) for queue in image_queues(redis, settings))


def _maintain(redis: Redis, queue: Queue, timestamp: float, now: float | None) -> int:
    started = StartedJobRegistry(queue=queue)
    intermediate = IntermediateQueue(queue.key, redis)
    moved = _requeue_never_started(queue, started, intermediate, timestamp)
    started.cleanup(timestamp=timestamp)
    # A job dequeued by a worker that died before registering it stays in rq's
    # intermediate list; after a minute there it goes back to the queue (batches are
    # idempotent, so a late original run does no harm).
    for job_id in intermediate.get_job_ids():
        if job_id in started or intermediate.set_first_seen(job_id):
            continue
        if now is None and not intermediate.should_be_cleaned_up(job_id):
            continue
        intermediate.remove(job_id)
        job = queue.fetch_job(job_id)
        if job is not None:
            queue.enqueue_job(job)
            moved += 1
    scheduled = ScheduledJobRegistry(queue=queue)
    for job_id in scheduled.get_jobs_to_schedule(int(timestamp)):
        if not redis.zrem(scheduled.key, job_id):
            continue  # someone else moved it
        job = queue.fetch_job(job_id)
        if job is not None:
            queue.enqueue_job(job)
            moved += 1
    return moved


def _requeue_never_started(
    queue: Queue, started: StartedJobRegistry, intermediate: IntermediateQueue, timestamp: float
) -> int:
    """rq 3 registers a job's execution in the worker, then forks the work-horse that marks
    the job STARTED. A worker killed in between leaves an expired entry for a job still
    QUEUED, which rq's cleanup drops from the registry without a retry (it retries STARTED
    jobs only): the batch would be lost. Put such jobs back on their queue."""
    moved = 0
    for job_id in started.get_expired_job_ids(timestamp):
        job = queue.fetch_job(job_id)
        if job is None or job.get_status(refresh=False) != JobStatus.QUEUED:  # just fetched
            continue
        started.remove_executions(job)
        intermediate.remove(job_id)
        queue.enqueue_job(job)
        moved += 1
    return moved


def queue_state(redis: Redis, settings: Settings) -> QueueState:
    """Batches queued, running, failed and waiting for a retry, over every priority."""
    state = QueueState(queued=0, running=0, failed=0, retrying=0)
    for queue in image_queues(redis, settings):
        # rq parks a dequeued job in an "intermediate" list until it is registered as
        # started: count it as running, or the run could end while it is in flight.
        intermediate = int(redis.llen(queue.intermediate_queue_key))
        state.queued += queue.count
        state.running += StartedJobRegistry(queue=queue).count + intermediate
        state.failed += FailedJobRegistry(queue=queue).count
        state.retrying += ScheduledJobRegistry(queue=queue).count
    return state


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while a child is spawned and recorded, then deliver them.

    Raised inside Popen, after its fork, the interrupt would leave a child nobody stops: a
    worker draining the queue after its run has ended, holding our stderr open.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives signals (and may set handlers)
        return
    held: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, _frame: held.append(signum))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        if held:
            signal.raise_signal(held[0])  # its own handler runs now, as if it came now


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Children write logs to our stderr so `--json` output on stdout stays clean. Their own
    # session: Ctrl-C reaches only this process, which stops them in order (a worker
    # signalled twice, by the terminal and by `_stop`, would abandon its batch).
    return subprocess.Popen(
        [sys.executable, "-m", "arachne", "--quiet-stop", *args],
        env=env,
        stdout=sys.stderr,
        stderr=sys.stderr,
        start_new_session=True,
    )


def run_campaign(
    settings: Settings,
    store: Store,
    redis: Redis,
    redis_url: str,
    name: str,
    *,
    workers: int | None = None,
    progress: ProgressFn | None = None,
    interval: float = 1.0,
) -> dict[str, Any]:
    """Crawl ``name`` with workers running alongside; returns the campaign summary."""
    env = settings.child_env()
    env["REDIS_URL"] = env["ARACHNE_REDIS_URL"] = redis_url
    # The crawl child joins this run: the unfinished one (resumed) or a new one.
    number, _new = begin_run(store, redis, name)
    with store.session() as session:
        set_status(session, name, "running")
    n_workers = workers or settings.workers
    # Spawned inside the try, each recorded as it starts: an interruption between two
    # spawns must stop the children already running, not orphan them.
    worker_procs: list[subprocess.Popen[bytes]] = []
    crawl: subprocess.Popen[bytes] | None = None
    stats = st.Stats(redis, name, number)
    started = time.monotonic()
    crawl_rc: int | None = None
    last_maintenance = time.monotonic()
    deaths: list[float] = []  # when workers died, for the crash-loop guard
    status = "failed"
    last_progress = 0.0
    try:
        # The crawl first: workers have nothing to do before its first pages are in, and
        # starting together they would slow its start on a small machine.
        with signals_held():
            crawl = _spawn(["crawl", name], env)
        for _ in range(n_workers):
            with signals_held():
                worker_procs.append(_spawn(["worker"], env))
        while True:
            # The end is noticed within a fifth of a second; progress every ``interval``.
            time.sleep(min(interval, END_POLL))
            if time.monotonic() - last_maintenance > 10:
                maintain_queue(redis, settings)
                last_maintenance = time.monotonic()
            if crawl_rc is None:
                crawl_rc = crawl.poll()
            state = queue_state(redis, settings)
            # Replace a worker that died (killed, OOM) so queued work is not stranded, but
            # give up on workers that die as they start (bad DATABASE_URL, store down).
            for i, proc in enumerate(worker_procs):
                if proc.poll() is not None and not state.idle:
                    now = time.monotonic()
                    deaths = [t for t in deaths if now - t < WORKER_DEATH_WINDOW] + [now]
                    if len(deaths) > WORKER_DEATHS_MAX * n_workers:
                        raise WorkerCrashLoop(
                            f"{len(deaths)} worker processes died within "
                            f"{WORKER_DEATH_WINDOW:.0f} s (exit code {proc.returncode}); "
                            "see their errors above. Queued work is kept: fix the cause and "
                            f"run `arachne worker` or `arachne run {name}` again"
                        )
                    with signals_held():
                        worker_procs[i] = _spawn(["worker"], env)
            if progress and time.monotonic() - last_progress >= interval:
                last_progress = time.monotonic()
                progress(
                    {
                        "elapsed": time.monotonic() - started,
                        "crawling": crawl_rc is None,
                        "queue": state,
                        "live": stats.get_run(number),
                        "run": number,
                    }
                )
            if crawl_rc is not None and state.idle:
                status = "done" if crawl_rc == 0 else "failed"
                break
    except KeyboardInterrupt:
        status = "stopped"
        raise
    finally:
        # Together, under one deadline; one that will not stop in time is killed rather
        # than left running without its parent (and the embedded Valkey it needs).
        _stop([p for p in (crawl, *worker_procs) if p is not None])
        # Whatever ended the run, the store says so and keeps the counters.
        live: dict[str, int] | None = None
        live_run: dict[str, int] | None = None
        with contextlib.suppress(Exception):
            live, live_run = stats.get_all(), stats.get_run(number)
        with contextlib.suppress(Exception), store.session() as session:
            if live is not None:
                snapshot_stats(session, name, live)
            set_status(session, name, status)
            end_run(session, name, number, status, live_run)
    with store.session() as session:
        summary = campaign_summary(session, name, live, lambda n: live_run if n == number else None)
    summary["crawl_exit_code"] = crawl_rc
    summary["jobs_failed"] = queue_state(redis, settings).failed
    summary["elapsed_seconds"] = round(time.monotonic() - started, 1)
    return summary


def begin_run(store: Store, redis: Redis, name: str) -> tuple[int, bool]:
    """The run a crawl of ``name`` works on (resumed, or new) and whether it is new. A new
    run crawls the hosts that served matches in earlier runs first."""
    from arachne.crawler.frontier import Frontier  # the crawler sits upstream: load late

    with store.session() as session:
        run, new = open_run(session, name)
        number = run.number
        hosts = known_bad_hosts(session, run.campaign_id) if new else set()
    if hosts:
        Frontier(redis, name, number).prefer(hosts)
    return number, new


CONTROL_ACTIONS = ("pause", "resume", "cancel")


def control_campaign(store: Store, redis: Redis, name: str, action: str) -> int:
    """An operator's pause, resume or cancel of campaign ``name``'s latest run (the CLI and
    the dashboard's API both call this); returns the run's number.

    The store records the run's status; the Redis control key tells the spiders and workers
    at work at once. Raises UnknownCampaign, or RunStateError when the run cannot go there.
    """
    from arachne.crawler.frontier import Frontier  # the crawler sits upstream: load late
    from arachne.store.runs import control_run

    if action not in CONTROL_ACTIONS:
        raise ValueError(action)
    with store.session() as session:
        number = control_run(session, name, action).number
    key = keys.run_control(name, number)
    if action == "resume":
        redis.delete(key)
    else:
        redis.set(key, "paused" if action == "pause" else "cancelled")
    if action == "cancel":  # nothing of its frontier will be crawled: free it
        Frontier(redis, name, number).clear()
    return number


def run_lock(name: str) -> str:
    """The store lock a run of campaign ``name`` holds (names may hold any character)."""
    return "run-" + hashlib.sha1(name.encode()).hexdigest()[:16]


@contextlib.contextmanager
def single_run(store: Store, redis: Redis, name: str) -> Iterator[None]:
    """Hold campaign ``name`` for this process: a second `arachne run NAME`, here or on any
    machine sharing the store, is refused with who holds it."""
    key = keys.campaign_runner(name)
    with store.exclusive(run_lock(name), wait=False) as held:
        if not held:
            holder = redis.get(key)
            who = holder.decode() if holder else "another process"
            raise CampaignBusy(
                f"campaign {name!r} is already being run by {who}; wait for it to finish "
                "or stop that process"
            )
        since = datetime.now(UTC).isoformat(timespec="seconds")
        redis.set(key, f"{socket.gethostname()} pid {os.getpid()} since {since}")
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                redis.delete(key)


def _stop(procs: list[subprocess.Popen[bytes]], timeout: float = 30) -> None:
    """Warm shutdown: rq finishes the job in hand on SIGTERM, then exits."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(
                f"arachne: {' '.join(map(str, proc.args[3:]))} (pid {proc.pid}) did not stop "
                f"within {timeout:.0f} s; killed",
                file=sys.stderr,
            )
            proc.kill()
            proc.wait()
