"""`arachne notices send|list|stats` and `arachne recheck`, as an operator runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import xarf
from click.testing import CliRunner

from arachne.cli import cli
from arachne.demo.mailbox import free_port
from tests.notices_world import ABUSE, IPS, World


def _env(world: World, **extra: str) -> dict[str, str]:
    s = world.settings
    contacts = Path(s.data_dir) / "contacts.toml"
    contacts.write_text(
        "[hosts]\n" + "".join(f'"{ip}" = "{email}"\n' for ip, email in ABUSE.items())
    )
    env = {
        "ARACHNE_REDIS_URL": str(s.redis_url),
        "ARACHNE_ALLOW_PRIVATE_NETWORKS": "true",
        "ARACHNE_CONTACTS_FILE": str(contacts),
        "ARACHNE_REPORTER_ORG": "Test Hotline",
        "ARACHNE_SMTP_FROM": "notices@hotline.example",
        "ARACHNE_SMTP_PORT": str(s.smtp_port),
        "ARACHNE_FETCH_TIMEOUT": "3",
    }
    if s.database_url:
        env["ARACHNE_DATABASE_URL"] = s.database_url
    env.update(extra)
    return env


def run(world: World, *args: str, **env: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        cli, ["--data-dir", str(world.settings.data_dir), *args], env=_env(world, **env)
    )
    return result.exit_code, result.stdout, result.stderr


def test_dry_run_shows_validated_notices_and_sends_nothing(world: World) -> None:
    code, out, _ = run(world, "notices", "send", "loop", "--dry-run", "--json")
    assert code == 0, out
    data = json.loads(out)
    assert len(data["previews"]) == 3
    assert {p["recipient"] for p in data["previews"]} == set(ABUSE.values())
    reports = [r for p in data["previews"] for r in p["xarf"]]
    assert len(reports) == 9 and all(xarf.parse(r).errors == [] for r in reports)
    assert world.mailbox.messages == []
    code, out, _ = run(world, "notices", "list", "loop", "--json")
    assert code == 0 and json.loads(out) == []
    code, out, _ = run(world, "notices", "send", "loop", "--dry-run")
    assert code == 0 and "Subject:" in out and "3 previewed" in out


def test_send_list_recheck_stats(world: World) -> None:
    code, out, _ = run(world, "notices", "send", "loop", "--json")
    assert code == 0, out
    assert json.loads(out)["sent"] == 3 and len(world.mailbox.messages) == 3
    code, out, _ = run(world, "notices", "list", "loop", "--json")
    rows = json.loads(out)
    assert [(r["status"], r["attempts"], r["kind"]) for r in rows] == [("sent", 1, "notice")] * 3
    assert {r["recipient"] for r in rows} == set(ABUSE.values())

    world.take_down(IPS[0], 0, 404)
    world.take_down(IPS[1], 2, 410)
    code, out, _ = run(world, "recheck", "loop", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert (report["checked"], report["removed"], report["up"]) == (9, 2, 7)
    code, out, _ = run(world, "recheck", "loop")
    assert code == 0 and "7 checked: 7 up" in out  # removed ones are no longer open

    code, out, _ = run(world, "notices", "stats", "loop", "--json")
    stats = json.loads(out)
    assert (stats["incidents"], stats["removed"], stats["still_up"]) == (9, 2, 7)
    assert stats["median_seconds"] is not None and stats["median_seconds"] >= 0
    assert stats["pct_within_24h"] == round(100 * 2 / 9, 1)
    code, out, _ = run(world, "notices", "stats")
    assert code == 0
    overall = out.splitlines()[0]
    assert "9 incidents, 9 noticed, 2 removed, 7 still up" in overall
    assert "22.2% within 24 h" in overall and "median" in overall
    assert "by provider:" in out and "by country:" in out


def test_failed_delivery_exits_non_zero_and_shows_why(world: World) -> None:
    closed = str(free_port())
    code, out, _ = run(world, "notices", "send", "loop", ARACHNE_SMTP_PORT=closed)
    assert code == 1
    assert "queued" in out and closed in out
    code, out, _ = run(world, "notices", "list", "loop")
    assert code == 0 and out.count("queued") == 3 and closed in out


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"ARACHNE_REPORTER_ORG": ""}, "ARACHNE_REPORTER_ORG"),
        ({"ARACHNE_SMTP_FROM": "arachne@hotline.invalid"}, "ARACHNE_SMTP_FROM"),
    ],
)
def test_real_sends_need_a_real_sender(world: World, env: dict[str, str], named: str) -> None:
    code, _, err = run(world, "notices", "send", "loop", **env)
    assert code == 2 and named in err
    assert world.mailbox.messages == []
    code, _, _ = run(world, "notices", "send", "loop", "--dry-run", **env)
    assert code == 0  # a preview is fine without one


def test_unknown_campaign_is_a_clear_error(world: World) -> None:
    for args in (("notices", "list", "nope"), ("recheck", "nope"), ("notices", "stats", "nope")):
        code, _, err = run(world, *args)
        assert code == 2 and "no campaign named 'nope'" in err
