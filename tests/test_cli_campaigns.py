"""`arachne campaign create --seeds-file`, `campaign show`, and one run of a campaign at a time."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from click.testing import CliRunner
from redis import Redis

from arachne.cli import cli
from arachne.runner import single_run
from arachne.settings import Settings
from arachne.store.db import Store


def run(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, input_text: str | None = None
) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        cli, ["--data-dir", str(tmp_path / "data"), *args], env=env, input=input_text
    )
    return result.exit_code, result.stdout, result.stderr


def test_seeds_file_with_comments_and_show(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds.txt"
    seeds.write_text(
        "# known-bad sites, reported 2026-11\n"
        "https://a.example/\n"
        "\n"
        "https://b.example/gallery  # tip line report\n"
        "https://a.example/\n"  # a repeat counts once
    )
    code, out, err = run(
        tmp_path, "campaign", "create", "sweep", "--seed", "https://c.example/",
        "--seeds-file", str(seeds), "--max-pages", "50",
    )  # fmt: skip
    assert code == 0, err
    assert "3 seed(s)" in out
    code, out, _ = run(tmp_path, "campaign", "show", "sweep", "--json")
    data = json.loads(out)
    assert data["seeds"] == [
        "https://c.example/",
        "https://a.example/",
        "https://b.example/gallery",
    ]
    assert data["scope"]["max_pages"] == 50 and data["status"] == "created"
    assert data["summary"]["pages"] == 0
    code, out, _ = run(tmp_path, "campaign", "show", "sweep")
    assert code == 0 and "seeds      https://c.example/" in out and "pages ≤ 50" in out


def test_bad_seeds_are_named_with_file_and_line(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("https://a.example/\nftp://b.example/\n")
    code, _, err = run(tmp_path, "campaign", "create", "x", "--seeds-file", str(seeds))
    assert code == 2 and f"{seeds}:2" in err and "ftp://b.example/" in err
    code, _, err = run(tmp_path, "campaign", "create", "x")
    assert code == 2 and "--seed" in err and "--seeds-file" in err
    code, _, err = run(tmp_path, "campaign", "show", "nope")
    assert code == 2 and "no campaign named 'nope'" in err


def test_a_second_run_of_a_campaign_is_refused_with_its_holder(
    tmp_path: Path, redis_url: str, redis_client: Redis
) -> None:
    env = {"ARACHNE_REDIS_URL": redis_url}
    code, _, err = run(tmp_path, "campaign", "create", "solo", "--seed", "http://127.0.0.1:9/",
                       env=env)  # fmt: skip
    assert code == 0, err
    store = Store.open(Settings(data_dir=tmp_path / "data", redis_url=redis_url))
    with single_run(store, redis_client, "solo"):
        code, _, err = run(tmp_path, "run", "solo", env=env)
        assert code == 2
        assert "already being run by" in err and f"pid {os.getpid()}" in err
        assert socket.gethostname() in err
    # Released when the holder finishes (or dies): the next run may start.
    with single_run(store, redis_client, "solo"):
        pass
    store.dispose()


def test_delete_removes_the_campaign_and_its_seen_set_but_keeps_incidents(
    tmp_path: Path, redis_url: str, redis_client: Redis
) -> None:
    from arachne.queue import keys
    from arachne.store.models import Campaign, Incident

    env = {"ARACHNE_REDIS_URL": redis_url}
    code, _, err = run(tmp_path, "campaign", "create", "old", "--seed", "https://a.example/",
                       env=env)  # fmt: skip
    assert code == 0, err
    redis_client.sadd(keys.campaign_seen("old"), "seen-url-key")
    store = Store.open(Settings(data_dir=tmp_path / "data", redis_url=redis_url))
    with store.session() as session:
        cid = session.query(Campaign.id).filter_by(name="old").scalar()
        session.add(
            Incident(
                campaign_id=cid,
                host="a.example",
                url_key="k",
                url="https://a.example/x.jpg",
                entry_ids=[],
                state="noticed",
                notices_sent=1,
                failures=0,
                reappeared=0,
            )
        )
    code, _, err = run(tmp_path, "campaign", "delete", "old", env=env, input_text="n\n")
    assert code == 1 and "Aborted" in err  # asked, and the answer was no
    with single_run(store, redis_client, "old"):
        code, _, err = run(tmp_path, "campaign", "delete", "old", "--yes", env=env)
        assert code == 2 and "is being run" in err
    code, out, err = run(tmp_path, "campaign", "delete", "old", "--yes", env=env)
    assert code == 0 and "deleted campaign 'old'" in out, err
    assert not redis_client.exists(keys.campaign_seen("old"))
    with store.session() as session:
        assert session.query(Campaign).count() == 0
        kept = session.query(Incident).one()
        assert (kept.url, kept.campaign_id) == ("https://a.example/x.jpg", None)
    code, _, err = run(tmp_path, "campaign", "delete", "old", "--yes", env=env)
    assert code == 2 and "no campaign named 'old'" in err
    store.dispose()
