"""The JSON API (api.py, api_campaigns.py, api_lists.py): every route and its 4xx answers,
with a real SQLite store, real Redis (db 7) and real API tokens."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from redis import Redis

from arachne.crawler.frontier import Frontier
from arachne.dashboard import api_campaigns
from arachne.queue import keys
from arachne.queue.connection import image_queue
from arachne.runner import run_lock
from arachne.settings import Settings
from arachne.store.db import Store
from arachne.store.models import AuditLog, Campaign, utcnow
from arachne.store.runs import open_run
from arachne.store.users import add_user, create_token
from tests.console import bearer, client_for, flushed_redis, log_in

REDIS_URL = "redis://127.0.0.1:6379/7"
pytestmark = pytest.mark.asyncio
PDQ = ["%064x" % (i * 0x1F2E3D4C5B6A7988) for i in range(1, 11)]  # ten list entries
SEED = {"name": "tip-1", "seeds": ["http://bad.example/gallery"]}


@pytest.fixture
def redis() -> Iterator[Redis]:
    yield from flushed_redis(REDIS_URL)


@pytest.fixture
def settings(tmp_path: Path, redis: Redis) -> Settings:
    return Settings(data_dir=tmp_path, redis_url=REDIS_URL, database_url=None,
                    queue_name="arachne-apitest")  # fmt: skip


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    store = Store.open(settings)
    yield store
    store.dispose()


@pytest.fixture
def tokens(store: Store) -> dict[str, str]:
    out = {}
    with store.session() as s:
        add_user(s, "root", "admin", "a long enough password", actor="test")  # set up
        for role in ("viewer", "operator"):
            out[role] = create_token(s, role, role, actor="test")[1]
        row, out["expired"] = create_token(s, "old", "admin", actor="test", expires_days=1)
        row.expires_at = utcnow() - timedelta(days=1)
        revoked, out["revoked"] = create_token(s, "gone", "admin", actor="test")
        revoked.revoked_at = utcnow()
    return out


async def call(client: TestClient, method: str, path: str, token: str | None, status: int,
               **kw: Any) -> Any:  # fmt: skip
    headers = {**(bearer(token) if token else {}), **kw.pop("headers", {})}
    resp = await client.request(method, path, headers=headers, **kw)
    body = await resp.json(content_type=None)
    assert resp.status == status, body
    if status >= 400:
        assert set(body) == {"error", "detail"} and body["detail"], body
    return body


# -- health and auth -------------------------------------------------------------------


async def test_health_needs_no_token(settings, store) -> None:
    async with client_for(settings) as client:
        assert await call(client, "GET", "/status/live", None, 200) == {"status": "ok"}
        ready = await call(client, "GET", "/status/ready", None, 200)
    assert ready == {"status": "ready", "checks": {"store": "ok", "redis": "ok"}}


async def test_ready_says_which_service_is_down(tmp_path, store) -> None:
    down = Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:9/0", database_url=None)
    async with client_for(down) as client:
        resp = await client.get("/status/ready")
        body = await resp.json()
    assert resp.status == 503
    assert body["status"] == "unavailable" and body["checks"]["store"] == "ok"
    assert body["checks"]["redis"].startswith("unreachable")


@pytest.mark.parametrize("who", [None, "expired", "revoked", "nonsense"])
async def test_api_refuses_without_a_live_token(settings, tokens, who) -> None:
    token = tokens.get(who, "arachne_nope") if who else None
    async with client_for(settings) as client:
        for path in ("/api/lists", "/api/openapi.json", "/api/campaigns", "/metrics"):
            await call(client, "GET", path, token, 401)
        resp = await client.get("/api/lists", headers={"Authorization": "Basic dTpw"})
        assert resp.status == 401 and resp.headers["WWW-Authenticate"] == "Bearer"


async def test_viewer_reads_but_cannot_change(settings, tokens) -> None:
    viewer = tokens["viewer"]
    async with client_for(settings) as client:
        await call(client, "GET", "/api/lists", viewer, 200)
        doc = await call(client, "GET", "/api/openapi.json", viewer, 200)
        assert doc["openapi"] == "3.1.0"
        actions = ("run", "pause", "resume", "cancel", "urls")
        for path in ("/api/campaigns", *(f"/api/campaigns/x/{a}" for a in actions),
                     "/api/lists/x/import", "/api/lists/x/retract"):  # fmt: skip
            body = await call(client, "POST", path, viewer, 403, json={})
            assert "operator" in body["detail"]


async def test_a_session_needs_its_csrf_token(settings, store, tokens) -> None:
    with store.session() as s:
        add_user(s, "ada", "operator", "correct horse battery", actor="test")
    async with client_for(settings) as client:
        csrf = await log_in(client, "ada", "correct horse battery")  # the new session's
        await call(client, "POST", "/api/campaigns", None, 403, json=SEED)
        resp = await client.post("/api/campaigns", json=SEED, headers={"X-CSRF-Token": csrf})
        assert resp.status == 201
        # An upload: the token travels as a header (multipart bodies are not parsed for it,
        # so nothing is spooled to disk before the check).
        form = FormData({"csrf_token": csrf})
        form.add_field("file", pdq_text(PDQ), filename="web-pdq.txt")
        refused = await client.post("/api/lists/web/import", data=form)
        assert refused.status == 403 and "header X-CSRF-Token" in (await refused.json())["detail"]
        form = FormData()
        form.add_field("file", pdq_text(PDQ), filename="web-pdq.txt")
        resp = await client.post("/api/lists/web/import", data=form, headers={"X-CSRF-Token": csrf})
        assert resp.status == 200 and (await resp.json())["added"] == 10
    with store.session() as s:
        actors = {a.actor for a in s.query(AuditLog).filter(AuditLog.action == "campaign.create")}
    assert actors == {"web:ada"}


# -- campaigns -------------------------------------------------------------------------


async def test_create_campaign_like_the_cli(settings, store, tokens) -> None:
    op = tokens["operator"]
    body = {
        **SEED,
        "seeds": [*SEED["seeds"], SEED["seeds"][0]],
        "allow_hosts": ["cdn.example"],
        "max_depth": 2,
        "max_pages_per_host": 50,
        "priority": "high",
        "robots": "record",
    }
    async with client_for(settings) as client:
        resp = await client.post("/api/campaigns", json=body, headers=bearer(op))
        made = await resp.json()
        assert resp.status == 201 and resp.headers["Location"] == "/api/campaigns/tip-1/stats"
        listed = await call(client, "GET", "/api/campaigns", tokens["viewer"], 200)
        stats = await call(client, "GET", "/api/campaigns/tip-1/stats", op, 200)
        await call(client, "POST", "/api/campaigns", op, 409, json=SEED)
    assert made["seeds"] == ["http://bad.example/gallery"] and made["status"] == "created"
    scope = made["scope"]
    assert scope["allowed_hosts"] == ["bad.example", "cdn.example"]
    assert (scope["max_depth"], scope["max_pages"], scope["max_pages_per_host"]) == (2, 10000, 50)
    assert (scope["priority"], scope["robots"]) == ("high", "record")
    assert [c["campaign"] for c in listed["campaigns"]] == ["tip-1"]
    assert stats["campaign"] == "tip-1" and stats["runs"] == []
    with store.session() as s:
        assert s.query(AuditLog).filter_by(action="campaign.create", actor="token:operator").count()


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", "JSON object"),
        (b"[1, 2]", "JSON object"),
        (b'{"name": "a", "seeds": ["http://x.example/"], "colour": 1}', "unknown field"),
        (b'{"name": "../x", "seeds": ["http://x.example/"]}', "name must be"),
        (b'{"name": "a"}', "seeds takes 1"),
        (b'{"name": "a", "seeds": "http://x.example/"}', "list of strings"),
        (b'{"name": "a", "seeds": ["ftp://x.example/"]}', "not an http(s) URL"),
        (b'{"name": "a", "seeds": ["http:///nohost"]}', "has no host"),
        (b'{"name": "a", "seeds": ["http://x.example:99999/"]}', "not a valid URL"),
        (b'{"name": "a", "seeds": ["http://x.example/a b"]}', "whitespace"),
        (b'{"name": "a", "seeds": ["http://x.example/"], "max_depth": true}', "max_depth"),
        (b'{"name": "a", "seeds": ["http://x.example/"], "max_pages": 0}', "max_pages"),
        (b'{"name": "a", "seeds": ["http://x.example/"], "robots": "maybe"}', "robots"),
        (b'{"name": "a", "seeds": ["http://x.example/"], "allow_hosts": ["a/b"]}', "host names"),
    ],
)
async def test_create_refuses_bad_input(settings, tokens, body, words) -> None:
    async with client_for(settings) as client:
        out = await call(client, "POST", "/api/campaigns", tokens["operator"], 400, data=body)
    assert words in out["detail"]


async def test_oversized_body_is_413(settings, tokens) -> None:
    huge = {"name": "a", "seeds": ["http://x.example/" + "a" * 2000] * 600}
    async with client_for(settings) as client:
        await call(client, "POST", "/api/campaigns", tokens["operator"], 413, json=huge)


async def test_reads_of_an_unknown_campaign_are_404(settings, tokens) -> None:
    async with client_for(settings) as client:
        for what in ("stats", "matches", "notices", "removal"):
            await call(client, "GET", f"/api/campaigns/nope/{what}", tokens["viewer"], 404)
        await call(client, "GET", "/api/campaigns/nope/matches?limit=x", tokens["viewer"], 400)


class FakeRun:
    pid = 4242

    def __init__(self) -> None:
        self.done: int | None = None

    def poll(self) -> int | None:
        return self.done


async def test_run_starts_arachne_run_once(settings, store, tokens, monkeypatch) -> None:
    started: list[tuple[str, int | None]] = []
    proc = FakeRun()

    def spawn(s: Settings, name: str, workers: int | None) -> tuple[FakeRun, Path]:
        started.append((name, workers))
        return proc, Path("/tmp/log")

    monkeypatch.setattr(api_campaigns, "spawn_run", spawn)
    op = tokens["operator"]
    async with client_for(settings) as client:
        await call(client, "POST", "/api/campaigns/tip-1/run", op, 404)
        await call(client, "POST", "/api/campaigns", op, 201, json=SEED)
        await call(client, "POST", "/api/campaigns/tip-1/run", op, 400, json={"workers": 0})
        out = await call(client, "POST", "/api/campaigns/tip-1/run", op, 202, json={"workers": 3})
        assert out == {"campaign": "tip-1", "pid": 4242, "workers": 3, "log": "/tmp/log"}
        busy = await call(client, "POST", "/api/campaigns/tip-1/run", op, 409)
        assert "already being run" in busy["detail"]
        proc.done = 0  # that run ended; another process now holds the campaign
        with store.exclusive(run_lock("tip-1"), wait=False) as held:
            assert held
            await call(client, "POST", "/api/campaigns/tip-1/run", op, 409)
        with store.session() as s:
            open_run(s, "tip-1")[0].status = "paused"
        paused = await call(client, "POST", "/api/campaigns/tip-1/run", op, 409)
        assert "paused" in paused["detail"]
    assert started == [("tip-1", 3)]


async def test_spawned_run_gets_the_dashboards_settings(settings) -> None:
    """A real `arachne run` child: it reads this store (so it finds no such campaign) and
    writes its output to the log the API names."""
    proc, log = api_campaigns.spawn_run(settings, "ghost", 1)
    assert proc.wait(timeout=60) != 0
    assert log.parent == settings.data_dir / "logs"
    assert "no campaign named 'ghost'" in log.read_text()


async def test_pause_resume_cancel(settings, store, tokens, redis) -> None:
    op = tokens["operator"]
    async with client_for(settings) as client:
        await call(client, "POST", "/api/campaigns/tip-1/pause", op, 404)
        await call(client, "POST", "/api/campaigns", op, 201, json=SEED)
        none = await call(client, "POST", "/api/campaigns/tip-1/pause", op, 409)
        assert "no unfinished run" in none["detail"]
        with store.session() as s:
            open_run(s, "tip-1")
        out = await call(client, "POST", "/api/campaigns/tip-1/pause", op, 200)
        assert out == {"campaign": "tip-1", "run": 1, "status": "paused"}
        assert redis.get(keys.run_control("tip-1", 1)) == b"paused"
        await call(client, "POST", "/api/campaigns/tip-1/pause", op, 409)
        await call(client, "POST", "/api/campaigns/tip-1/resume", op, 200)
        assert redis.get(keys.run_control("tip-1", 1)) is None
        await call(client, "POST", "/api/campaigns/tip-1/resume", op, 409)
        out = await call(client, "POST", "/api/campaigns/tip-1/cancel", op, 200)
        assert out["status"] == "cancelled"
        assert redis.get(keys.run_control("tip-1", 1)) == b"cancelled"


async def test_control_without_redis_is_503_and_changes_nothing(tmp_path, store, tokens) -> None:
    with store.session() as s:
        s.add(Campaign(name="tip-1", seeds=[], scope={}, status="created", stats={}))
    with store.session() as s:
        open_run(s, "tip-1")
    down = Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:9/0", database_url=None)
    async with client_for(down) as client:
        await call(client, "POST", "/api/campaigns/tip-1/pause", tokens["operator"], 503)
    with store.session() as s:
        assert open_run(s, "tip-1")[0].status == "running"


# -- submitting URLs -------------------------------------------------------------------


async def test_urls_as_seeds(settings, store, tokens, redis) -> None:
    op, path = tokens["operator"], "/api/campaigns/tip-1/urls"
    urls = ["http://bad.example/more", "http://new.example/", "http://bad.example/gallery"]
    async with client_for(settings) as client:
        await call(client, "POST", path, op, 404, json={"urls": urls})
        await call(client, "POST", "/api/campaigns", op, 201, json=SEED)
        out = await call(client, "POST", path, op, 200, json={"urls": urls})
        assert out == {
            "campaign": "tip-1",
            "as": "seeds",
            "seeds_added": 2,
            "seeds_known": 1,
            "frontier": None,
        }  # no run in progress: the next run crawls them
        with store.session() as s:
            open_run(s, "tip-1")
        out = await call(
            client,
            "POST",
            path,
            op,
            200,
            json={"urls": ["http://bad.example/now", "http://other.example/"]},
        )
    # Only what the running spiders may crawl goes to their frontier now.
    assert out["frontier"] == {"run": 1, "added": 1, "duplicate": 0, "capped": 0}
    assert Frontier(redis, "tip-1", 1).counts()["queued"] == 1
    with store.session() as s:
        c = s.query(Campaign).filter_by(name="tip-1").one()
        assert c.seeds == [
            *SEED["seeds"],
            urls[0],
            urls[1],
            "http://bad.example/now",
            "http://other.example/",
        ]
        assert c.scope["allowed_hosts"] == ["bad.example", "new.example", "other.example"]


async def test_urls_as_images(settings, store, tokens, redis) -> None:
    op, path = tokens["operator"], "/api/campaigns/tip-1/urls"
    body = {"urls": ["http://cdn.example/a.jpg", "http://cdn.example/b.png"], "as": "images"}
    async with client_for(settings) as client:
        await call(client, "POST", "/api/campaigns", op, 201, json=SEED)
        idle = await call(client, "POST", path, op, 409, json=body)
        assert "no run in progress" in idle["detail"]
        with store.session() as s:
            open_run(s, "tip-1")
        out = await call(client, "POST", path, op, 200, json=body)
        assert out == {"campaign": "tip-1", "as": "images", "run": 1, "queued": 2, "known": 0}
        again = await call(client, "POST", path, op, 200, json=body)
        assert (again["queued"], again["known"]) == (0, 2)
    assert image_queue(redis, settings).count == 1


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"urls": []}, "urls takes 1"),
        ({"urls": ["http://x.example/"] * 1001}, "urls takes 1 to 1000"),
        ({"urls": ["javascript:alert(1)"]}, "not an http(s) URL"),
        ({"urls": ["http://x.example/"], "as": "pages"}, "as must be one of"),
        ({"urls": ["http://x.example/"], "extra": 1}, "unknown field"),
    ],
)
async def test_urls_refuses_bad_input(settings, tokens, body, words) -> None:
    async with client_for(settings) as client:
        out = await call(client, "POST", "/api/campaigns/tip-1/urls", tokens["operator"], 400,
                         json=body)  # fmt: skip
    assert words in out["detail"]


async def test_seed_entries_match_the_spiders_own() -> None:
    """The API offers seeds to a run's frontier in the shape the scheduler stores them."""
    from arachne.crawler.scheduler import FrontierScheduler
    from arachne.crawler.scope import Scope
    from arachne.crawler.spiders.campaign import CampaignSpider

    spider = CampaignSpider("c", ["http://a.example/"], Scope.for_seeds(["http://a.example/"]))
    request = spider._request("http://a.example/x", depth=0)
    entry = FrontierScheduler._entry(None, request)  # type: ignore[arg-type]
    assert entry.data == api_campaigns.SEED_DATA and entry.depth == 0


# -- lists -----------------------------------------------------------------------------


def pdq_text(values: list[str]) -> bytes:
    return "".join(f"pdq {v}\n" for v in values).encode()


def leftovers() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("arachne-list-*")}


async def test_list_import_raw_and_multipart(settings, store, tokens) -> None:
    op, before = tokens["operator"], leftovers()
    async with client_for(settings) as client:
        assert await call(client, "GET", "/api/lists", op, 200) == {"lists": []}
        raw = {"data": pdq_text(PDQ), "headers": {"Content-Type": "text/plain"}}
        out = await call(client, "POST", "/api/lists/tips/import", op, 200, **raw)
        assert (out["name"], out["version"], out["format"], out["added"]) == ("tips", 1, "text", 10)
        assert out["rematch"] is None  # no image hashed yet: nothing to rematch
        form = FormData()
        form.add_field("note", "ignored")
        form.add_field("file", pdq_text(PDQ[:9]), filename="tips-pdq.txt")
        out = await call(client, "POST", "/api/lists/tips/import", op, 200, data=form)
        assert (out["version"], out["retracted"], out["unchanged"]) == (2, 1, 9)
        resp = await client.get("/api/lists", headers=bearer(tokens["viewer"]))
        text = await resp.text()
    assert '"active_total": 9' in text and '"retracted": 1' in text
    assert not any(v in text for v in PDQ)  # counts only, never a hash value
    assert leftovers() == before
    with store.session() as s:
        assert s.query(AuditLog).filter_by(action="list.import", actor="token:operator").count()


async def test_list_import_refusals(settings, tokens) -> None:
    op, path, before = tokens["operator"], "/api/lists/tips/import", leftovers()
    async with client_for(settings) as client:
        bad = await call(client, "POST", path, op, 400, data=pdq_text(["f" * 64, "z" * 64]))
        assert bad["detail"] == "(request body):2: pdq hash contains 'z', which is not a hex digit"
        unknown = await call(client, "POST", path, op, 400, data=b"<b>hello</b>\n")
        assert "the format parameter" in unknown["detail"]
        empty = await call(client, "POST", path + "?format=text", op, 409, data=b"# none\n")
        assert "the force parameter" in empty["detail"] and "/tmp" not in empty["detail"]
        await call(client, "POST", path, op, 200, data=pdq_text(PDQ))
        cut = await call(client, "POST", path, op, 409, data=pdq_text(PDQ[:5]))
        assert "would retract 5 of the 10" in cut["detail"]
        forced = await call(client, "POST", path + "?force=true", op, 200, data=pdq_text(PDQ[:5]))
        assert forced["retracted"] == 5
        for query, words in (("?threshold=999", "threshold"), ("?kind=crc", "kind"),
                             ("?format=xls", "format"), ("?force=maybe", "force"),
                             ("?colour=red", "unknown query")):  # fmt: skip
            out = await call(client, "POST", path + query, op, 400, data=pdq_text(PDQ))
            assert words in out["detail"]
        form = FormData()
        form.add_field("other", b"x", filename="x.txt")
        out = await call(client, "POST", path, op, 400, data=form)
        assert "'file'" in out["detail"]
    assert leftovers() == before


async def test_list_retract_by_id(settings, tokens) -> None:
    op, csv = tokens["operator"], "pdq,id\n" + "".join(f"{v},V{i}\n" for i, v in enumerate(PDQ))
    async with client_for(settings) as client:
        await call(client, "POST", "/api/lists/vendor/retract", op, 404, json={"ids": ["V1"]})
        await call(client, "POST", "/api/lists/vendor/import", op, 200, data=csv.encode())
        out = await call(
            client, "POST", "/api/lists/vendor/retract", op, 200, json={"ids": ["V1", "V2", "nope"]}
        )
        assert (out["action"], out["retracted"], out["unknown_ids"]) == ("retract", 2, ["nope"])
        assert out["active"] == {"pdq": 8}
        await call(client, "POST", "/api/lists/vendor/retract", op, 404, json={"ids": ["nope"]})
        for body in ({}, {"ids": []}, {"ids": [1]}, {"ids": ["x"], "why": "?"}):
            await call(client, "POST", "/api/lists/vendor/retract", op, 400, json=body)
