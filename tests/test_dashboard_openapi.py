"""The OpenAPI document (openapi.py): valid OpenAPI 3.1, in sync with the app's routes, and
true to the answers: schemathesis fuzzes the live app (a real store, SQLite and PostgreSQL,
which refuses what SQLite keeps, e.g. NUL in text; Redis db 7) with an operator token, then
the admin routes with an admin token, and must find no 5xx and no answer that breaks the
document."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest
import schemathesis
from aiohttp import web
from redis import Redis
from schemathesis.engine import events, from_schema
from schemathesis.specs.openapi.definitions import OPENAPI_31
from sqlalchemy import select, update

from arachne.dashboard import api_campaigns
from arachne.dashboard.app import create_app
from arachne.dashboard.openapi import document
from arachne.settings import Settings
from arachne.store.db import Store
from arachne.store.models import (
    ApiToken,
    AuditLog,
    Campaign,
    HashEntry,
    HashList,
    Host,
    Notice,
    Run,
)
from arachne.store.users import add_user, create_token
from tests.conftest import drop_postgres_database, fresh_postgres_database

REDIS_URL = "redis://127.0.0.1:6379/7"
MAX_EXAMPLES = 20
"""Per operation and phase: the whole run stays well under a minute."""
CHECKS = [
    "not_a_server_error",
    "response_schema_conformance",
    "status_code_conformance",
    "content_type_conformance",
]


PG_DATABASE = "arachne_test_openapi"
#: The operations only an admin may call: fuzzed a second time, with an admin token.
ADMIN_PATHS = r"^/api/(users|tokens)"


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    database = fresh_postgres_database(PG_DATABASE) if request.param == "postgresql" else None
    redis = Redis.from_url(REDIS_URL)
    redis.flushdb()
    # Notices go to an outbox folder (JSON files, never media): fuzzed sends go all the way.
    yield Settings(data_dir=tmp_path, redis_url=REDIS_URL, database_url=database,
                   queue_name="arachne-openapi", notice_channel="outbox",
                   outbox_dir=tmp_path / "outbox", reporter_org="Test Hotline",
                   smtp_from="notices@hotline.example")  # fmt: skip
    redis.flushdb()
    redis.close()
    if database:
        drop_postgres_database(PG_DATABASE)


def api_routes(settings: Settings) -> dict[str, set[str]]:
    """path -> methods of every route the app serves under /api, /status and /metrics."""
    routes: dict[str, set[str]] = {}
    for route in create_app(settings).router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        ours = path.startswith(("/api/", "/status/")) or path in ("/api", "/metrics")
        if ours and route.method != "HEAD":  # aiohttp adds HEAD to every GET
            routes.setdefault(path, set()).add(route.method.lower())
    return routes


def test_document_is_valid_openapi_31() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    errors = [e.message for e in jsonschema.Draft202012Validator(OPENAPI_31).iter_errors(doc)]
    assert errors == []


def test_document_lists_exactly_the_apps_routes(settings: Settings) -> None:
    served = api_routes(settings)
    documented = {path: set(item) for path, item in document()["paths"].items()}
    assert documented == served


def test_every_operation_says_its_errors_and_who_may_call_it() -> None:
    for path, item in document()["paths"].items():
        for method, op in item.items():
            codes = set(op["responses"])
            if path.startswith("/status/"):
                assert op["security"] == [] and "401" not in codes, path
                continue
            assert "401" in codes, (method, path)
            if "{name}" in path:
                assert "404" in codes or path.startswith("/api/lists/"), (method, path)
            if "requestBody" in op:
                assert {"400", "413"} <= codes, (method, path)


# -- schemathesis against the live app ---------------------------------------------------


def seed(store: Store) -> tuple[str, str]:
    """A world with one of everything the answers can show; the fuzzer's operator and admin
    tokens."""
    when = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
    with store.session() as s:
        add_user(s, "root", "admin", "a long enough password", actor="test")
        campaign = Campaign(
            name="demo", seeds=["http://bad.example/"], scope={"allowed_hosts": ["bad.example"]},
            status="running", created_at=when, started_at=when, stats={"pages/crawled": 3},
        )  # fmt: skip
        hash_list = HashList(name="sample", format="text")
        s.add_all([campaign, hash_list, Host(hostname="bad.example")])
        s.flush()
        s.add(Run(campaign_id=campaign.id, number=1, status="running", stats={}))
        s.add(HashEntry(hash_list=hash_list, kind="md5", value="a" * 32, external_id="V1"))
        host = s.query(Host).one()
        s.add(Notice(reference="ARN-1", campaign_id=campaign.id, host_id=host.id,
                     urls=["http://bad.example/a.jpg"], url_set_hash="h", xarf={}, body=".",
                     status="pending"))  # fmt: skip
        operator = create_token(s, "fuzzer", "operator", actor="test")[1]
        admin, admin_secret = create_token(s, "fuzzer-admin", "admin", actor="test")
        # Far from the ids the fuzzer tries, so it does not revoke the token it calls with.
        s.execute(update(ApiToken).where(ApiToken.id == admin.id).values(id=987_654_321))
        return operator, admin_secret


class Served:
    """The app on a real port, in a thread of its own (schemathesis calls it with requests)."""

    def __init__(self, app: web.Application) -> None:
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.run_until_complete(self.runner.cleanup())
        self.loop.close()


class _NoRun:
    pid = 0

    def poll(self) -> int | None:
        return None


def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A fuzzed run request must not start crawls: the spawn is the one thing replaced.
    monkeypatch.setattr(api_campaigns, "spawn_run", lambda *a: (_NoRun(), Path("run.log")))
    store = Store.open(settings)
    operator, admin = seed(store)
    store.dispose()
    served = Served(create_app(settings))
    started, cases, failures, errors = time.monotonic(), Counter[str](), [], []
    try:
        for token, only_admin in ((operator, False), (admin, True)):
            schema = schemathesis.openapi.from_dict(document(), config=_config(served, token))
            if only_admin:
                schema = schema.include(path_regex=ADMIN_PATHS)
            for event in from_schema(schema).execute():
                if isinstance(event, events.ScenarioFinished):
                    cases[event.label or "?"] += len(event.recorder.cases)
                    failures += _failures(event)
                elif isinstance(event, events.NonFatalError | events.FatalError):
                    errors.append(f"{getattr(event, 'label', '')}: {event!r}")
        elapsed = time.monotonic() - started
    finally:
        served.close()
    backend = "postgresql" if settings.database_url else "sqlite"
    with capsys.disabled():  # the summary the note quotes
        print(f"\nschemathesis ({backend}): {len(cases)} operations, "
              f"{sum(cases.values())} test cases, {len(failures)} failures, "
              f"{len(errors)} errors in {elapsed:.1f} s")  # fmt: skip
    assert errors == []
    assert failures == [], "\n".join(failures)
    store = Store.open(settings)
    with store.session() as s:  # the admin pass reached its handlers, not only the checks
        actors = set(s.scalars(select(AuditLog.actor)))
    store.dispose()
    assert {"token:fuzzer", "token:fuzzer-admin"} <= actors
    assert set(cases) == {f"{m.upper()} {p}" for p, item in document()["paths"].items()
                          for m in item}  # fmt: skip


def _config(served: Served, token: str) -> schemathesis.Config:
    config = schemathesis.Config()
    config.update(seed=20261120, max_failures=None)
    config.cache.enabled = False
    project = config.projects.override
    project.update(base_url=served.url, headers={"Authorization": f"Bearer {token}"})
    project.checks.update(included_check_names=CHECKS)
    project.generation.update(max_examples=MAX_EXAMPLES, database="none")
    project.phases.update(phases=["examples", "coverage", "fuzzing"])
    return config


def _failures(event: events.ScenarioFinished) -> list[str]:
    out = []
    for case_id, checks in event.recorder.checks.items():
        for check in checks:
            if check.failure_info is None:
                continue
            seen = event.recorder.interactions.get(case_id)
            response = seen.response if seen is not None else None
            out.append(
                f"{event.label}: {check.name}: {check.failure_info.failure.title} "
                f"({seen.request.method if seen else '?'} {seen.request.uri if seen else '?'} "
                f"-> {response.status_code if response else '?'}: "
                f"{response.content[:200] if response else b''!r})"
            )
    return out
