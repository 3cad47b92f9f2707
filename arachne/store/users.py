"""Console users and API tokens (issue 10): roles, argon2 password hashes, hashed tokens.

Roles are ordered: a viewer reads; an operator also runs campaigns, sends notices and
imports lists; an admin also manages users and tokens (``allows``). Passwords are kept as
argon2id hashes (argon2-cffi's defaults). A token is 32 random bytes shown once at its
creation; only its SHA-256 is stored: it is already unguessable, so a fast hash is safe
and lets every API request be checked with one indexed lookup. Every change is audited.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from arachne.errors import ArachneError
from arachne.settings import Settings
from arachne.store.models import ApiToken, AuditLog, User, utcnow

ROLES = ("viewer", "operator", "admin")
TOKEN_PREFIX = "arachne_"
MIN_PASSWORD = 12
LAST_USED_PRECISION = timedelta(seconds=60)
_hasher = PasswordHasher()


class AccessError(ArachneError):
    """A user or token request that cannot be done (unknown name, weak password...)."""


class UnknownAccess(AccessError):
    """No such user or token."""


class AccessConflict(AccessError):
    """The name is taken, or the change would leave nobody able to manage access."""


def allows(role: str, needed: str) -> bool:
    """Whether ``role`` may do what needs ``needed`` (admin > operator > viewer)."""
    return ROLES.index(role) >= ROLES.index(needed)


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise AccessError(f"role {role!r}: choose one of {', '.join(ROLES)}")


def _audit(session: Session, actor: str, action: str, **detail: Any) -> None:
    session.add(AuditLog(at=utcnow(), actor=actor, action=action, detail=detail))


def add_user(session: Session, name: str, role: str, password: str, *, actor: str) -> User:
    _check_role(role)
    if not name or len(name) > 100:
        raise AccessError("a user name is 1 to 100 characters")
    if len(password) < MIN_PASSWORD:
        raise AccessError(f"a password is at least {MIN_PASSWORD} characters")
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise AccessConflict(f"user {name!r} exists already (remove it first to replace it)")
    user = User(name=name, role=role, password_hash=_hasher.hash(password), created_at=utcnow())
    session.add(user)
    _audit(session, actor, "user.add", name=name, role=role)
    session.flush()
    return user


def remove_user(session: Session, name: str, *, actor: str) -> None:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise UnknownAccess(f"no user {name!r} (see `arachne users list`)")
    admins = session.scalar(select(func.count()).where(User.role == "admin"))
    if user.role == "admin" and admins == 1 and _others(session, user):
        raise AccessConflict(
            f"{name!r} is the last admin: add another admin first, or nobody could manage access"
        )
    session.delete(user)
    _audit(session, actor, "user.remove", name=name)


def _others(session: Session, user: User) -> bool:
    """Whether users other than ``user`` exist (the very last user may go: setup mode again)."""
    return bool(session.scalar(select(exists().where(User.id != user.id))))


def list_users(session: Session) -> list[dict[str, Any]]:
    return [
        {"name": u.name, "role": u.role, "created_at": u.created_at.isoformat()}
        for u in session.scalars(select(User).order_by(User.name))
    ]


def check_password(session: Session, name: str, password: str) -> User | None:
    """The user when the password is right, else None (the same for an unknown name)."""
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        _hasher.hash(password)  # as slow as a real check: no timing hint of which names exist
        return None
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user


#: Longest token life (ten years): beyond it, a date overflows, and "never" says it better.
MAX_TOKEN_DAYS = 3650


def create_token(
    session: Session, name: str, role: str, *, actor: str, expires_days: float | None = None
) -> tuple[ApiToken, str]:
    """A new token; (its row, the token itself: shown once, never stored)."""
    _check_role(role)
    if not name or len(name) > 100:
        raise AccessError("a token name is 1 to 100 characters")
    if expires_days is not None and not 0 < expires_days <= MAX_TOKEN_DAYS:
        raise AccessError(f"a token expires after more than 0 and at most {MAX_TOKEN_DAYS} days")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    token = ApiToken(
        name=name,
        role=role,
        token_sha256=_digest(secret),
        prefix=secret[: len(TOKEN_PREFIX) + 4],
        created_at=now,
        created_by=actor,
        expires_at=now + timedelta(days=expires_days) if expires_days else None,
    )
    session.add(token)
    session.flush()
    _audit(session, actor, "token.create", id=token.id, name=name, role=role,
           expires_at=token.expires_at.isoformat() if token.expires_at else None)  # fmt: skip
    return token, secret


def revoke_token(session: Session, token_id: int, *, actor: str) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None:
        raise UnknownAccess(f"no token {token_id} (see `arachne tokens list`)")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        _audit(session, actor, "token.revoke", id=token_id, name=token.name)
    return token


def list_tokens(session: Session) -> list[dict[str, Any]]:
    now = utcnow()
    return [
        {
            "id": t.id,
            "name": t.name,
            "role": t.role,
            "prefix": t.prefix,
            "created_at": t.created_at.isoformat(),
            "created_by": t.created_by,
            "expires_at": t.expires_at.isoformat() if t.expires_at else None,
            "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
            "state": _state(t, now),
        }
        for t in session.scalars(select(ApiToken).order_by(ApiToken.id))
    ]


def check_token(session: Session, secret: str, *, now: datetime | None = None) -> ApiToken | None:
    """The token's row when ``secret`` is a live token (not revoked, not expired)."""
    token = session.scalar(select(ApiToken).where(ApiToken.token_sha256 == _digest(secret)))
    now = now or utcnow()
    if token is None or _state(token, now) != "active":
        return None
    # A write per request would serialise the API on the store: a minute's precision will do.
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_PRECISION:
        token.last_used_at = now
    return token


def _state(token: ApiToken, now: datetime) -> str:
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= now:
        return "expired"
    return "active"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def has_users(session: Session) -> bool:
    """Whether anyone can log in yet (until then the dashboard only says how to start)."""
    return bool(session.scalar(select(exists().where(User.id.is_not(None)))))


def any_users(settings: Settings) -> bool:
    """``has_users`` for a caller without a store open (`arachne dashboard` at start)."""
    from arachne.store.db import Store

    store = Store.open(settings)
    try:
        with store.session() as session:
            return has_users(session)
    finally:
        store.dispose()
