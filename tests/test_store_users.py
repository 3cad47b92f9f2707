"""Console users and API tokens (issue 10, access control): roles, argon2 passwords, tokens
stored only as hashes, expiry, revocation, and an audit of every change."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from arachne.cli import cli
from arachne.store.db import Store
from arachne.store.models import ApiToken, AuditLog, User, utcnow
from arachne.store.users import (
    AccessError,
    add_user,
    allows,
    check_password,
    check_token,
    create_token,
    list_tokens,
    remove_user,
    revoke_token,
)
from tests.conftest import open_test_store

PASSWORD = "correct horse battery"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened = open_test_store(request.param, tmp_path, "arachne_users_test")
    yield opened
    opened.dispose()


def test_roles_are_ordered() -> None:
    assert allows("admin", "operator") and allows("operator", "viewer")
    assert not allows("viewer", "operator") and not allows("operator", "admin")


def test_passwords_are_argon2_and_checked(store: Store) -> None:
    with store.session() as s:
        add_user(s, "ana", "operator", PASSWORD, actor="test")
    with store.session() as s:
        stored = s.scalar(select(User.password_hash))
        assert stored is not None and stored.startswith("$argon2id$") and PASSWORD not in stored
        assert check_password(s, "ana", PASSWORD) is not None
        assert check_password(s, "ana", PASSWORD + "x") is None
        assert check_password(s, "nobody", PASSWORD) is None
        with pytest.raises(AccessError, match="exists already"):
            add_user(s, "ana", "viewer", PASSWORD, actor="test")
        with pytest.raises(AccessError, match="at least 12"):
            add_user(s, "bo", "viewer", "short", actor="test")
        with pytest.raises(AccessError, match="choose one of"):
            add_user(s, "bo", "root", PASSWORD, actor="test")
        remove_user(s, "ana", actor="test")
        assert check_password(s, "ana", PASSWORD) is None
        actions = s.scalars(select(AuditLog.action).order_by(AuditLog.id)).all()
    assert actions == ["user.add", "user.remove"]


def test_tokens_are_hashed_expire_and_revoke(store: Store) -> None:
    with store.session() as s:
        token, secret = create_token(s, "platform", "viewer", actor="test", expires_days=1)
        other, other_secret = create_token(s, "ops", "operator", actor="test")
    with store.session() as s:
        assert secret not in " ".join(str(v) for v in s.execute(select(ApiToken)).all())
        found = check_token(s, secret)
        assert found is not None and found.role == "viewer" and found.last_used_at is not None
        assert check_token(s, secret + "x") is None
        # A day and a minute later, the first has expired; the second never does.
        later = utcnow() + timedelta(days=1, minutes=1)
        assert check_token(s, secret, now=later) is None
        assert check_token(s, other_secret, now=later) is not None
        revoke_token(s, other.id, actor="test")
        assert check_token(s, other_secret) is None
        states = {t["name"]: t["state"] for t in list_tokens(s)}
    assert states == {"platform": "active", "ops": "revoked"}


def test_cli_users_and_tokens(store: Store, tmp_path: Path) -> None:
    env = {"ARACHNE_DATA_DIR": str(tmp_path), "ARACHNE_CONFIG": str(tmp_path / "none.toml")}
    url = store.engine.url.render_as_string(hide_password=False)
    if url.startswith("postgresql"):
        env["DATABASE_URL"] = url
    runner = CliRunner()
    added = runner.invoke(cli, ["users", "add", "ana", "--role", "admin", "--password-stdin"],
                          env=env, input=PASSWORD + "\n")  # fmt: skip
    assert added.exit_code == 0, added.output
    prompted = runner.invoke(cli, ["users", "add", "bo", "--role", "viewer"], env=env,
                             input=f"{PASSWORD}\n{PASSWORD}\n")  # fmt: skip
    assert prompted.exit_code == 0, prompted.output
    listed = json.loads(runner.invoke(cli, ["users", "list", "--json"], env=env).stdout)
    assert [(u["name"], u["role"]) for u in listed] == [("ana", "admin"), ("bo", "viewer")]
    weak = runner.invoke(cli, ["users", "add", "cy", "--role", "viewer", "--password-stdin"],
                         env=env, input="short\n")  # fmt: skip
    assert weak.exit_code == 2 and "at least 12" in weak.stderr

    made = runner.invoke(cli, ["tokens", "create", "platform", "--role", "viewer",
                               "--expires", "30", "--json"], env=env)  # fmt: skip
    info = json.loads(made.stdout)
    assert info["token"].startswith("arachne_") and info["expires_at"] is not None
    shown = runner.invoke(cli, ["tokens", "list"], env=env).stdout
    assert "platform" in shown and info["token"] not in shown  # only its first characters
    with store.session() as s:
        assert check_token(s, info["token"]) is not None
    assert runner.invoke(cli, ["tokens", "revoke", str(info["id"])], env=env).exit_code == 0
    with store.session() as s:
        assert check_token(s, info["token"]) is None
    gone = runner.invoke(cli, ["users", "remove", "nobody"], env=env)
    assert gone.exit_code == 2 and "no user 'nobody'" in gone.stderr
