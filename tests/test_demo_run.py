"""The README's demo command, run as an operator would: `arachne demo --json`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def test_arachne_demo_json_runs_the_whole_pipeline(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    proc = subprocess.run(
        [sys.executable, "-m", "arachne", "--data-dir", str(tmp_path / "data"), "demo", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)  # stdout is exactly one JSON object
    assert summary["ground_truth"]["ok"], summary["ground_truth"]
    assert summary["ground_truth"]["expected"] >= 40
    assert summary["pages"] >= 200 and summary["images_queued"] >= 1000
    assert summary["matches"]["exact"] > 0 and summary["matches"]["near"] > 0
    assert summary["hosts_with_matches"] >= 3
    assert summary["smtp_messages_received"] == summary["hosts_with_matches"]
    assert summary["notices"]["sent"] == summary["hosts_with_matches"]
    # Contacts came from the local RDAP server (RIPE-, ARIN-, APNIC-shaped), not overrides.
    contacts = summary["contacts"]
    assert {c["source"] for c in contacts.values()} == {"rdap"}
    assert sorted(c["email"] for c in contacts.values()) == [
        "abuse@hosting-a.example",
        "abuse@hosting-b.example",
        "abuse@hosting-c.example",
    ]
    # The loop: a third of the matched images taken down, one re-check, time to removal.
    removal = summary["removal"]
    matched = summary["ground_truth"]["matched"]
    assert removal["taken_down"] == len(range(0, matched, 3))
    assert removal["removed"] == removal["taken_down"]
    assert removal["still_up"] == matched - removal["taken_down"]
    assert set(removal["reasons"]) == {"http_404", "http_410", "changed"}
    # From each accepted notice to the re-check moments later: within the demo's own run.
    assert removal["median_seconds"] is not None
    assert 0 <= removal["median_seconds"] <= summary["elapsed_seconds"]
    assert removal["pct_within_24h"] == round(100 * removal["removed"] / matched, 1)
    assert set(summary["errors"]["by_reason"]) == {
        "http_404",
        "not_an_image",
        "truncated",
        "decompression_bomb",
    }
    data_dir = Path(summary["data_dir"])
    assert (data_dir / "arachne.db").is_file()
    assert list((data_dir / "valkey").rglob("*.aof"))
