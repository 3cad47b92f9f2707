"""A bad setting is one line naming it and exit code 2, for every command; never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from arachne.cli import cli


def _run(tmp_path: Path, env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path / "data"), *args], env=env)
    return result.exit_code, result.stderr


@pytest.mark.parametrize("args", [("lists", "--json"), ("stats", "c"), ("dashboard",)])
def test_a_bad_environment_value_names_the_setting(tmp_path: Path, args: tuple[str]) -> None:
    code, err = _run(tmp_path, {"ARACHNE_PDQ_THRESHOLD": "abc"}, *args)
    assert code == 2
    assert err.startswith("error: setting pdq_threshold (ARACHNE_PDQ_THRESHOLD): ")
    assert "'abc'" in err and err.count("\n") == 1 and "Traceback" not in err


def test_an_unknown_key_in_the_config_file_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    config = tmp_path / "arachne.toml"
    config.write_text("pdq_treshold = 20\n")
    code, err = _run(tmp_path, {"ARACHNE_CONFIG": str(config)}, "lists")
    assert code == 2
    assert err == (
        f"error: {config}: unknown setting 'pdq_treshold' (did you mean pdq_threshold?)\n"
    )
    config.write_text("batch_size = [\n")
    code, err = _run(tmp_path, {"ARACHNE_CONFIG": str(config)}, "lists")
    assert code == 2 and "not valid TOML" in err and err.count("\n") == 1


def test_a_bad_value_in_the_config_file_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "arachne.toml"
    config.write_text("batch_size = 0\n")
    code, err = _run(tmp_path, {"ARACHNE_CONFIG": str(config)}, "lists")
    assert code == 2 and err.startswith(f"error: setting batch_size ({config}): ")


def test_redis_url_must_be_a_redis_url_and_is_not_echoed(tmp_path: Path) -> None:
    env = {"REDIS_URL": "http://user:hunter2@cache.example:6379/0"}
    code, err = _run(tmp_path, env, "worker", "--burst")
    assert code == 2
    assert err.startswith("error: setting redis_url (REDIS_URL): must start with redis://")
    assert "hunter2" not in err and err.count("\n") == 1


def test_every_bad_setting_gets_its_own_line(tmp_path: Path) -> None:
    env = {"ARACHNE_PDQ_THRESHOLD": "abc", "ARACHNE_BATCH_SIZE": "0"}
    code, err = _run(tmp_path, env, "lists")
    lines = err.splitlines()
    assert code == 2 and len(lines) == 2 and all(line.startswith("error: ") for line in lines)
    assert {"batch_size", "pdq_threshold"} == {line.split()[2] for line in lines}


def test_unknown_arachne_environment_variables_are_not_errors(tmp_path: Path) -> None:
    code, err = _run(tmp_path, {"ARACHNE_NOT_A_SETTING": "1"}, "lists", "--json")
    assert code == 0, err


def test_a_real_process_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    env = dict(os.environ, ARACHNE_PDQ_THRESHOLD="abc")
    proc = subprocess.run(
        [sys.executable, "-m", "arachne", "--data-dir", str(tmp_path), "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: setting pdq_threshold (ARACHNE_PDQ_THRESHOLD): Input should be a valid "
        "integer, unable to parse string as an integer (got 'abc')"
    ]
