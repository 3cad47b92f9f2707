"""The `arachne` command as an operator meets it: help, clear errors, JSON output."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from arachne.cli import cli
from tests.conftest import PHOTOS


def _run(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path / "data"), *args])
    return result.exit_code, result.stdout, result.stderr


def test_help_lists_every_operator_command(tmp_path: Path) -> None:
    code, out, _ = _run(tmp_path, "--help")
    assert code == 0
    for command in (
        "lists",
        "campaign",
        "crawl",
        "worker",
        "run",
        "matches",
        "notices",
        "stats",
        "hash",
        "dashboard",
        "demo",
    ):
        assert f"  {command}" in out


def test_hash_json_fast_path_and_reference_path(tmp_path: Path) -> None:
    import hashlib

    import numpy as np
    import pdqhash
    from PIL import Image

    photo = PHOTOS / "skimage_astronaut.png"
    bits, quality = pdqhash.compute(np.asarray(Image.open(photo).convert("RGB")))
    expected = np.packbits(bits.astype(np.uint8)).tobytes().hex()

    code, out, _ = _run(tmp_path, "hash", str(photo), "--reference", "--json")
    assert code == 0
    (ref,) = json.loads(out)
    assert ref["path"] == "reference" and ref["pdq"] == expected and ref["quality"] == quality
    assert ref["md5"] == hashlib.md5(photo.read_bytes()).hexdigest()

    code, out, _ = _run(tmp_path, "hash", str(photo), "--json")
    assert code == 0
    (fast,) = json.loads(out)
    assert fast["path"] == "fast" and fast["md5"] == ref["md5"]
    assert (int(fast["pdq"], 16) ^ int(expected, 16)).bit_count() <= 10


def test_malformed_list_is_refused_with_line_and_nothing_imported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("md5 " + "a" * 32 + "\nmd5 nothex\n")
    code, _, err = _run(tmp_path, "lists", "import", str(bad), "--name", "x")
    assert code == 2
    assert "bad.txt:2" in err and "Traceback" not in err
    code, out, _ = _run(tmp_path, "lists", "--json")
    assert code == 0 and json.loads(out) == []


def test_lists_show_counts_never_hashes(tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    values = ["0" * 31 + str(i) for i in range(3)]
    good.write_text("".join(f"md5 {v}\n" for v in values))
    assert _run(tmp_path, "lists", "import", str(good), "--name", "vendor")[0] == 0
    code, out, _ = _run(tmp_path, "lists")
    assert code == 0 and "vendor" in out and "md5 3" in out
    assert not any(v in out for v in values)


def test_campaign_errors_are_one_clear_line(tmp_path: Path) -> None:
    code, _, err = _run(tmp_path, "campaign", "create", "c", "--seed", "ftp://x")
    assert code == 2 and "http(s)" in err
    assert _run(tmp_path, "campaign", "create", "c", "--seed", "http://a.example/")[0] == 0
    code, _, err = _run(tmp_path, "campaign", "create", "c", "--seed", "http://a.example/")
    assert code == 2 and "already exists" in err
    code, _, err = _run(tmp_path, "stats", "nope", "--json")
    assert code == 2 and "no campaign named 'nope'" in err
    code, out, _ = _run(tmp_path, "stats", "c", "--json")
    assert code == 0 and json.loads(out)["status"] == "created"


def test_vics_import_reports_skipped_and_filters_categories(tmp_path: Path) -> None:
    sample = Path(__file__).parent / "data" / "lists" / "vics-export.json"
    code, out, err = _run(tmp_path, "lists", "import", str(sample), "--name", "vic")
    assert code == 0, err
    assert "(vics)" in out and "skipped" in out and "photodna" in out.lower()
    code, out, _ = _run(tmp_path, "lists", "--json")
    everything = json.loads(out)[0]["active_total"]
    code, out, err = _run(
        tmp_path, "lists", "import", str(sample), "--name", "vic1", "--category", "1", "--json"
    )
    assert code == 0, err
    only_one = json.loads(out)
    assert 0 < sum(only_one["active"].values()) < everything


def test_bad_seeds_and_ranges_are_clear_errors(tmp_path: Path) -> None:
    for seed in ("http://", "http://[::1"):
        code, _, err = _run(tmp_path, "campaign", "create", "c", "--seed", seed)
        assert code == 2 and "Traceback" not in err and "--seed" in err, err
    code, _, err = _run(
        tmp_path, "campaign", "create", "c", "--seed", "http://a.example/", "--max-pages", "0"
    )
    assert code == 2 and "--max-pages" in err
    code, _, err = _run(tmp_path, "run", "c", "--workers", "0")
    assert code == 2 and "--workers" in err
