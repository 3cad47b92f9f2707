"""Settings: arachne.toml < ARACHNE_* / REDIS_URL env < explicit arguments."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from arachne.settings import Settings


def test_precedence_file_env_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "arachne.toml"
    config.write_text('batch_size = 50\nsmtp_host = "mail.file"\npdq_threshold = 20\n')
    monkeypatch.setenv("ARACHNE_CONFIG", str(config))
    monkeypatch.setenv("ARACHNE_SMTP_HOST", "mail.env")
    monkeypatch.setenv("REDIS_URL", "redis://10.0.0.1:6379/2")
    s = Settings(pdq_threshold=25)
    assert s.batch_size == 50  # file
    assert s.smtp_host == "mail.env"  # env beats file
    assert s.pdq_threshold == 25  # argument beats file
    assert s.redis_url == "redis://10.0.0.1:6379/2"  # the conventional name works


def test_defaults_are_embedded(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    assert s.redis_url is None
    assert s.db_url == f"sqlite:///{(tmp_path / 'arachne.db').resolve()}"
    assert s.pdq_threshold == 31 and s.pdq_min_quality == 50


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARACHNE_PDQ_THRESHOLD", "300")
    with pytest.raises(ValidationError, match="pdq_threshold"):
        Settings()


def test_child_env_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings(data_dir=tmp_path, batch_size=7, database_url="sqlite:////tmp/x.db")
    env = s.child_env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    again = Settings()
    assert again.model_dump() == s.model_dump()


def test_user_agent_names_the_hotlines_crawler_page() -> None:
    from arachne.settings import Settings

    assert Settings().agent.startswith("ArachneBot/")
    agent = Settings(contact_url="https://hotline.example/crawler").agent
    assert agent.startswith("ArachneBot/") and "(+https://hotline.example/crawler)" in agent
    assert (
        Settings(user_agent="Hotline/2 (+https://h.example)").agent
        == "Hotline/2 (+https://h.example)"
    )
