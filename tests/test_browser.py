"""The console in a real browser: Playwright for Python driving Debian's Chromium.

The demo runs as an operator would start it (`arachne demo --serve`), so the pages show a
real campaign: log in with the demo's throwaway admin, open the demo campaign, see the
charts drawn with data, export the notices as CSV, log out and be refused. The page must
not trip its own Content Security Policy (no inline script or style slipped in).
"""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
#: Flags for a closed network: no background fetches to Google's hosts at start.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Demo:
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    url: str = ""
    name: str = ""
    password: str = ""

    @property
    def base(self) -> str:
        return re.match(r"http://[^/]+", self.url).group(0)  # type: ignore[union-attr]


def _collect(stream: object, demo: Demo) -> None:
    for line in stream:  # type: ignore[attr-defined]
        demo.lines.append(line.rstrip("\n"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    data_dir = tmp_path_factory.mktemp("browser") / "data"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "arachne", "--data-dir", str(data_dir), "demo", "--serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    demo = Demo(proc)
    threading.Thread(target=_collect, args=(proc.stdout, demo), daemon=True).start()
    try:
        deadline = time.monotonic() + 400
        while not any("serving the demo site and dashboard" in line for line in demo.lines):
            assert proc.poll() is None, "\n".join(demo.lines[-40:])
            assert time.monotonic() < deadline, "\n".join(demo.lines[-40:])
            time.sleep(0.5)
        for line in demo.lines:
            if found := re.search(r"demo: dashboard at (\S+)", line):
                demo.url = found.group(1)
            if found := re.search(r"dashboard login: (\S+) / (\S+)", line):
                demo.name, demo.password = found.groups()
        assert demo.url and demo.password, "\n".join(demo.lines)
        yield demo
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    assert Path(CHROMIUM).exists(), "install Debian's chromium: apt-get install chromium"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_log_in_see_charts_export_csv_log_out(demo: Demo, browser, tmp_path: Path) -> None:
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda msg: console.append(msg.text))
    page.on("pageerror", lambda exc: console.append(f"page error: {exc}"))

    # Not logged in: the campaign URL leads to the login form.
    page.goto(demo.url)
    assert "/login" in page.url
    page.get_by_label("Name").fill(demo.name)
    page.get_by_label("Password").fill(demo.password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(demo.url)
    assert page.locator("h1").first.inner_text().startswith("demo")

    # The charts: uPlot draws canvases from the series endpoint, with non-zero totals.
    chart = page.locator('[data-chart="cumulative"] canvas')
    chart.first.wait_for(state="visible", timeout=20_000)
    assert page.locator('[data-chart="per_bucket"] canvas').first.is_visible()
    note = page.locator("[data-chart-note]")
    page.wait_for_function(
        "() => /pages crawled [1-9]/.test(document.querySelector('[data-chart-note]').textContent)"
    )
    totals = dict(
        re.findall(r"(pages crawled|images hashed|images matched) ([\d,]+)", note.inner_text())
    )
    assert int(totals["pages crawled"].replace(",", "")) >= 200
    assert int(totals["images hashed"].replace(",", "")) >= 1000
    assert int(totals["images matched"].replace(",", "")) > 0
    # Pixels, not an empty frame: the canvas differs from a blank one of its size.
    drawn = page.evaluate(
        """() => {
          const c = document.querySelector('[data-chart="cumulative"] canvas');
          const blank = document.createElement('canvas');
          blank.width = c.width; blank.height = c.height;
          return c.toDataURL() !== blank.toDataURL();
        }"""
    )
    assert drawn
    page.screenshot(path=str(tmp_path / "campaign.png"), full_page=True)
    assert page.locator("img").count() == 0  # the console never shows an image

    # Notices: export as CSV, one row per notice the demo sent.
    page.get_by_role("navigation").get_by_role("link", name="Notices").click()
    page.wait_for_url(re.compile(r"/notices"))
    shown = page.locator("table.compact tr").count() - 1
    with page.expect_download() as download_info:
        page.get_by_role("link", name="CSV").click()
    download = download_info.value
    assert download.suggested_filename.endswith(".csv")
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text())))
    assert len(rows) == shown >= 3
    assert {row["status"] for row in rows} >= {"sent"}
    assert all(row["recipient"].startswith("abuse@") for row in rows if row["status"] == "sent")

    # Log out: the pages and the API refuse the browser from then on.
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r"/login$"))
    page.goto(demo.url)
    assert "/login" in page.url
    refused = context.request.get(demo.base + "/api/campaigns")
    assert refused.status == 401
    assert not [line for line in console if "Content Security Policy" in line], console
    context.close()
