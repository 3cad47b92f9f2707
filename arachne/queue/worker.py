"""`arachne worker`: an rq worker that keeps the known-hash index loaded between jobs.

rq forks a work horse per job; the index is loaded (and refreshed after list imports) in
the parent, so every fork inherits it copy-on-write instead of reloading it.
"""

from __future__ import annotations

import logging

from redis import Redis
from rq import Queue, Worker
from rq.job import Job
from rq.serializers import JSONSerializer

from arachne.matcher import decode
from arachne.queue import jobs
from arachne.queue.connection import image_queues
from arachne.settings import Settings
from arachne.store.db import Store

log = logging.getLogger(__name__)


class ArachneWorker(Worker):
    def execute_job(self, job: Job, queue: Queue) -> None:
        context = jobs.get_context()
        try:
            context.refresh_if_stale()
        except Exception:
            # A store blip must not kill the worker with the job dequeued: match with the
            # index already loaded; the next job tries the refresh again.
            log.exception("could not check the hash lists for updates; using the loaded index")
        # Close the parent's pooled connections so the fork never shares a socket.
        context.store.engine.dispose()
        super().execute_job(job, queue)

    def unsubscribe(self) -> None:
        """rq's, in the order that lets the pub/sub thread end at once.

        rq unsubscribes, then stops the thread; redis-py 8.2's ``stop()`` then waits for the
        thread, which after the unsubscribe reply can sit in ``get_message(timeout=60)``
        waiting for a subscription that never comes: a stopping worker hung up to a minute
        (`arachne run` killed it after 30 s). Flag the thread first: the unsubscribe reply
        wakes it, and it sees the flag and ends.
        """
        thread = self.pubsub_thread
        if not thread:
            return
        try:
            thread.stop(timeout=0)  # redis-py >= 8.2: stop() also waits; not yet
        except TypeError:
            thread.stop()  # older redis-py: stop() only clears the flag
        self.pubsub.unsubscribe()
        thread.join(timeout=5)

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()
        _ensure_tick(self.connection, jobs.get_context().settings)


def _ensure_tick(redis: Redis, settings: Settings) -> None:
    from arachne.notices.schedule import ensure_tick

    try:
        ensure_tick(redis, settings)
    except Exception:  # the schedule must never take a worker down
        log.exception("could not schedule the notices tick")


def run_worker(settings: Settings, redis: Redis, *, burst: bool = False) -> bool:
    store = Store.open(settings)
    jobs.set_context(jobs.WorkerContext(settings, redis, store))
    decode.warm_up()  # compiled here, in the parent, so every forked work horse inherits it
    jobs.get_context().refresh_if_stale()
    from arachne.notices.schedule import notices_queue

    # The notices tick first: it is one short job a minute, and behind a crawl's image
    # batches its re-checks and reminders would wait for hours.
    queues = [notices_queue(redis, settings), *image_queues(redis, settings)]
    worker = ArachneWorker(queues, connection=redis, serializer=JSONSerializer)
    _ensure_tick(redis, settings)
    # with_scheduler: re-enqueues batches whose backed-off retry is due.
    return worker.work(burst=burst, logging_level="WARNING", with_scheduler=True)
