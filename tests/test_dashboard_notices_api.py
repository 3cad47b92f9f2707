"""Sending notices from the console (POST /api/campaigns/{name}/notices): the same send as
`arachne notices send`, to a real local SMTP server, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from arachne.store.models import AuditLog
from arachne.store.users import add_user, create_token
from tests.console import bearer, client_for
from tests.notices_world import ABUSE, World

URL = "/api/campaigns/loop/notices"


def tokens(world: World) -> dict[str, str]:
    with world.store.session() as session:
        add_user(session, "root", "admin", "a long enough password", actor="test")
        return {
            role: create_token(session, f"{role}-bot", role, actor="test")[1]
            for role in ("viewer", "operator")
        }


@pytest.mark.asyncio
async def test_an_operator_sends_the_due_notices_once(world: World) -> None:
    contacts = Path(world.settings.data_dir) / "contacts.toml"
    contacts.write_text(
        "[hosts]\n" + "".join(f'"{ip}" = "{email}"\n' for ip, email in ABUSE.items())
    )
    settings = world.settings.model_copy(update={"contacts_file": contacts})
    token = tokens(world)
    op = bearer(token["operator"])
    async with client_for(settings) as client:
        assert (await client.post(URL, headers=bearer(token["viewer"]))).status == 403
        dry = await client.post(URL, json={"dry_run": True}, headers=op)
        preview = await dry.json()
        assert dry.status == 200 and preview["dry_run"] is True
        assert {p["recipient"] for p in preview["previews"]} == set(ABUSE.values())
        assert all(p["reports"] == 3 for p in preview["previews"])  # 3 matched URLs a host
        assert world.mailbox.messages == []  # a dry run sends nothing

        sent = await client.post(URL, headers=op)  # no body: send
        report = await sent.json()
        assert sent.status == 200 and (report["sent"], report["failed"]) == (3, 0)
        assert "previews" not in report and len(world.mailbox.messages) == 3
        assert {o["recipient"] for o in report["notices"]} == set(ABUSE.values())
        again = await (await client.post(URL, headers=op)).json()
        assert (again["sent"], again["already_sent"]) == (0, 3)  # nothing twice
        assert len(world.mailbox.messages) == 3

        unknown = await client.post("/api/campaigns/nope/notices", headers=op)
        assert unknown.status == 404 and "nope" in (await unknown.json())["detail"]
        bad = await client.post(URL, json={"dry_run": "yes"}, headers=op)
        assert bad.status == 400 and "dry_run" in (await bad.json())["detail"]
        extra = await client.post(URL, json={"dry_run": False, "to": "x"}, headers=op)
        assert extra.status == 400
    with world.store.session() as session:
        actions = session.scalars(select(AuditLog.action).where(
            AuditLog.actor == "token:operator-bot")).all()  # fmt: skip
    assert actions.count(f"http POST {URL}") == 3


@pytest.mark.asyncio
async def test_notices_not_configured_is_a_409_that_says_what_is_missing(world: World) -> None:
    settings = world.settings.model_copy(update={"notice_channel": "outbox", "outbox_dir": None})
    token = tokens(world)
    async with client_for(settings) as client:
        resp = await client.post(URL, headers=bearer(token["operator"]))
        body = await resp.json()
    assert resp.status == 409 and "ARACHNE_OUTBOX_DIR" in body["detail"]
    assert world.mailbox.messages == []
