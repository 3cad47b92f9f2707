"""An asyncio server run on its own event loop in a daemon thread, for synchronous callers
(the CLI, tests): ``with ServerThread(start, stop, "name") as started: ...``.

A daemon thread, so an interrupted caller never hangs on it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class ServerThread(Generic[T]):
    def __init__(
        self,
        start: Callable[[], Coroutine[Any, Any, T]],
        stop: Callable[[], Coroutine[Any, Any, None]],
        name: str,
    ) -> None:
        self._start, self._stop, self._name = start, stop, name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> T:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name=self._name, daemon=True)
        self._thread.start()
        try:
            return asyncio.run_coroutine_threadsafe(self._start(), loop).result(timeout=120)
        except BaseException:
            self._shutdown()
            raise

    def __exit__(self, *exc: object) -> None:
        self._shutdown()

    def _shutdown(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        try:
            asyncio.run_coroutine_threadsafe(self._stop(), loop).result(timeout=30)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
            loop.close()
