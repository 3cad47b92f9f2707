"""Store tables (DESIGN.md). Image content is never a column: hashes and metadata only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from arachne.clock import utcnow


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every backend (SQLite hands back naive datetimes)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    seeds: Mapped[list[Any]] = mapped_column(JSON)
    scope: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default="created")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Image(Base):
    """Content-addressed by SHA-256. Never holds the bytes."""

    __tablename__ = "images"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    md5: Mapped[str] = mapped_column(String(32), index=True)
    sha1: Mapped[str] = mapped_column(String(40), index=True)
    pdq: Mapped[str | None] = mapped_column(String(64))
    pdq_quality: Mapped[int | None] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    format: Mapped[str | None] = mapped_column(String(16))
    size: Mapped[int] = mapped_column(BigInteger)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Every PDQ query it was matched with, packed (matcher/variants.py): later lists are
    # matched against it without fetching it again. Hashes only, never image bytes.
    pdq_queries: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)


class Run(Base):
    """One crawl of a campaign: its own frontier, seen-sets and counters (in Redis while it
    runs, ``stats`` here after). An unfinished run (running, stopped, failed) is resumed
    by the next crawl; a finished one (done, cancelled) makes the next crawl a new run."""

    __tablename__ = "runs"
    __table_args__ = (UniqueConstraint("campaign_id", "number", name="uq_run_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="running")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Sighting(Base):
    """An image URL seen on a page during a campaign: one row per URL per campaign, holding
    what the latest run that fetched it found (``run``)."""

    __tablename__ = "sightings"
    __table_args__ = (UniqueConstraint("campaign_id", "url_key", name="uq_sighting_url"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    url_key: Mapped[str] = mapped_column(String(40))  # sha1 of image_url: bounded unique key
    image_url: Mapped[str] = mapped_column(Text)
    page_url: Mapped[str | None] = mapped_column(Text)
    host: Mapped[str] = mapped_column(String(255), index=True)
    image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id"), index=True)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    http_status: Mapped[int | None] = mapped_column(Integer)
    server_ip: Mapped[str | None] = mapped_column(String(64))
    content_type: Mapped[str | None] = mapped_column(String(200))
    headers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(String(64))
    error_detail: Mapped[str | None] = mapped_column(Text)
    run: Mapped[int | None] = mapped_column(Integer)  # number of the run that last fetched it

    image: Mapped[Image | None] = relationship()


class HashList(Base):
    __tablename__ = "hash_lists"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    format: Mapped[str] = mapped_column(String(32))
    source: Mapped[str | None] = mapped_column(Text)
    threshold: Mapped[int | None] = mapped_column(Integer)  # PDQ distance; None = default
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # `arachne lists delete`: every entry retracted, the list hidden; rows stay so past
    # matches keep their evidence, and importing the name again brings the list back.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class HashListVersion(Base):
    """One change of a list (import, retraction, rollback, deletion): numbered per list,
    with its counts and, for an import, the source file's SHA-256 (store/listversions.py)."""

    __tablename__ = "hash_list_versions"
    __table_args__ = (UniqueConstraint("list_id", "number", name="uq_list_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("hash_lists.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    action: Mapped[str] = mapped_column(String(16))  # import | retract | rollback | delete
    actor: Mapped[str | None] = mapped_column(String(100))
    format: Mapped[str | None] = mapped_column(String(32))
    source: Mapped[str | None] = mapped_column(Text)
    source_sha256: Mapped[str | None] = mapped_column(String(64))
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str | None] = mapped_column(Text)
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class HashEntry(Base):
    __tablename__ = "hash_entries"
    __table_args__ = (
        UniqueConstraint("list_id", "kind", "value", name="uq_entry_value"),
        Index("ix_entry_kind_value", "kind", "value"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("hash_lists.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # md5 | sha1 | sha256 | pdq
    value: Mapped[str] = mapped_column(String(64))  # lower-case hex
    category: Mapped[str | None] = mapped_column(String(64))
    external_id: Mapped[str | None] = mapped_column(String(200))
    threshold: Mapped[int | None] = mapped_column(Integer)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    version: Mapped[int | None] = mapped_column(Integer)  # list version that first added it

    hash_list: Mapped[HashList] = relationship()


class HashChange(Base):
    """An existing entry whose state changed (retracted, restored, re-labelled): workers
    replay these after their last-seen id to update their index without a rebuild. New
    entries need no row: their ids are above every id a worker has loaded."""

    __tablename__ = "hash_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("hash_entries.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The list version that made the change and the entry's state just before it: a
    # rollback restores the state before the first change after the version it goes to.
    version_id: Mapped[int | None] = mapped_column(Integer, index=True)
    was_deleted: Mapped[bool | None] = mapped_column(Boolean)
    old_category: Mapped[str | None] = mapped_column(String(64))
    old_external_id: Mapped[str | None] = mapped_column(String(200))
    old_threshold: Mapped[int | None] = mapped_column(Integer)


class Match(Base):
    __tablename__ = "matches"
    __table_args__ = (UniqueConstraint("sighting_id", "entry_id", name="uq_match"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    sighting_id: Mapped[int] = mapped_column(ForeignKey("sightings.id", ondelete="CASCADE"))
    entry_id: Mapped[int] = mapped_column(ForeignKey("hash_entries.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))  # exact | near
    hash_kind: Mapped[str] = mapped_column(String(16))
    distance: Mapped[int] = mapped_column(Integer, default=0)
    variant: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    retroactive: Mapped[bool] = mapped_column(Boolean, default=False)  # by a rematch

    sighting: Mapped[Sighting] = relationship()
    entry: Mapped[HashEntry] = relationship()


class ReviewItem(Base):
    """A near miss: a PDQ distance just above the threshold (the review band). A question
    for an analyst, never a notice; confirming it makes it a match (store/review.py)."""

    __tablename__ = "review_items"
    __table_args__ = (UniqueConstraint("sighting_id", "entry_id", name="uq_review"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    sighting_id: Mapped[int] = mapped_column(ForeignKey("sightings.id", ondelete="CASCADE"))
    entry_id: Mapped[int] = mapped_column(ForeignKey("hash_entries.id", ondelete="CASCADE"))
    distance: Mapped[int] = mapped_column(Integer)
    variant: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    state: Mapped[str] = mapped_column(String(12), default="pending", index=True)
    decided_by: Mapped[str | None] = mapped_column(String(100))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    note: Mapped[str | None] = mapped_column(Text)


class Suppression(Base):
    """An analyst rejected this image (by SHA-256) as a match of this entry: neither a match
    nor a review item is recorded for the pair again (false-positive control)."""

    __tablename__ = "suppressions"
    __table_args__ = (UniqueConstraint("image_sha256", "entry_id", name="uq_suppression"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    image_sha256: Mapped[str] = mapped_column(String(64))
    entry_id: Mapped[int] = mapped_column(ForeignKey("hash_entries.id", ondelete="CASCADE"))
    review_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Host(Base):
    """A host name serving matches, and who gets its notices (with how that was found)."""

    __tablename__ = "hosts"

    id: Mapped[int] = mapped_column(primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255), unique=True)
    ip: Mapped[str | None] = mapped_column(String(64))
    provider: Mapped[str | None] = mapped_column(String(200))
    abuse_email: Mapped[str | None] = mapped_column(String(320))
    contact_source: Mapped[str] = mapped_column(String(32), default="none")
    is_cdn: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Added in 0003: the resolution behind abuse_email, kept as evidence.
    country: Mapped[str | None] = mapped_column(String(2))
    language: Mapped[str | None] = mapped_column(String(8))
    network: Mapped[str | None] = mapped_column(String(64))
    cdn: Mapped[str | None] = mapped_column(String(64))
    contact_reason: Mapped[str | None] = mapped_column(Text)  # why there is no contact
    contact_chain: Mapped[list[Any] | None] = mapped_column(JSON, default=list)
    escalation: Mapped[list[Any] | None] = mapped_column(JSON, default=list)  # next recipients
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ContactCache(Base):
    """RDAP answers by the network range (or domain) they cover, so an IP inside a cached
    range costs no query. Ranges compare as fixed-width hex (32 digits) of the address."""

    __tablename__ = "contact_cache"
    __table_args__ = (
        UniqueConstraint("kind", "key", name="uq_contact_cache_key"),
        Index("ix_contact_cache_range", "kind", "version", "start_hex"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # ip | domain
    key: Mapped[str] = mapped_column(String(255))  # CIDR / range text, or the domain
    version: Mapped[int] = mapped_column(Integer, default=0)  # 4 | 6 | 0 for domains
    start_hex: Mapped[str | None] = mapped_column(String(32))
    end_hex: Mapped[str | None] = mapped_column(String(32))
    answer: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Notice(Base):
    """One message to one recipient about a set of URLs on one host, in one cycle
    (0 = first notice, 1.. = reminders). ``xarf`` holds one XARF report per URL."""

    __tablename__ = "notices"
    __table_args__ = (
        UniqueConstraint("host_id", "url_set_hash", "cycle", name="uq_notice_urls_cycle"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(64), unique=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"))
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id"))
    urls: Mapped[list[Any]] = mapped_column(JSON)
    url_set_hash: Mapped[str] = mapped_column(String(64))
    cycle: Mapped[int] = mapped_column(Integer, default=0)
    recipient: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(Text)
    xarf: Mapped[Any] = mapped_column(JSON)
    body: Mapped[str] = mapped_column(Text)
    channel: Mapped[str] = mapped_column(String(16), default="smtp")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Added in 0003.
    kind: Mapped[str] = mapped_column(String(16), default="notice")  # notice | reminder
    tier: Mapped[int] = mapped_column(Integer, default=0)  # 0 provider, 1 CDN/upstream, ...
    contact_source: Mapped[str | None] = mapped_column(String(32))
    first_reference: Mapped[str | None] = mapped_column(String(64))  # reminders: the first
    language: Mapped[str | None] = mapped_column(String(8))
    response: Mapped[str | None] = mapped_column(Text)  # "250 ..." / "HTTP 202"
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # retry backoff

    host: Mapped[Host] = relationship()


class Incident(Base):
    """One matched URL over time: open -> noticed -> removed (or reappeared -> open).

    Time to removal runs from the first accepted notice to the first re-check that showed
    the content gone; its resolution is the re-check spacing.
    """

    __tablename__ = "incidents"
    __table_args__ = (
        UniqueConstraint("url_key", name="uq_incident_url"),
        Index("ix_incident_due_check", "state", "next_check_at"),
        Index("ix_incident_due_notice", "state", "next_notice_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int | None] = mapped_column(
        ForeignKey("campaigns.id", ondelete="SET NULL"), index=True
    )
    host: Mapped[str] = mapped_column(String(255), index=True)
    host_id: Mapped[int | None] = mapped_column(ForeignKey("hosts.id"))
    url_key: Mapped[str] = mapped_column(String(40))
    url: Mapped[str] = mapped_column(Text)
    page_url: Mapped[str | None] = mapped_column(Text)
    sighting_id: Mapped[int | None] = mapped_column(ForeignKey("sightings.id", ondelete="SET NULL"))
    entry_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)  # matched list entries
    sha256: Mapped[str | None] = mapped_column(String(64))
    pdq: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="open")
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    first_noticed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    first_reference: Mapped[str | None] = mapped_column(String(64))
    last_noticed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    notices_sent: Mapped[int] = mapped_column(Integer, default=0)
    next_notice_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    next_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    failures: Mapped[int] = mapped_column(Integer, default=0)  # timeouts/5xx in a row
    first_failure_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    removal_reason: Mapped[str | None] = mapped_column(String(64))
    removal_seconds: Mapped[float | None] = mapped_column(Float)
    reappeared: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class NoticeIncident(Base):
    """Which notices covered which incidents."""

    __tablename__ = "notice_incidents"

    notice_id: Mapped[int] = mapped_column(
        ForeignKey("notices.id", ondelete="CASCADE"), primary_key=True
    )
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Recheck(Base):
    """One re-check of an incident's URL: what came back and what it meant."""

    __tablename__ = "rechecks"

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(Text)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # up | removed | unreachable (transient, not yet removed) | reappeared
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64))  # http_404, nxdomain, changed, ...
    http_status: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(Text)


class User(Base):
    """A console user (store/users.py): a role and an argon2 password hash, never the password."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # viewer | operator | admin
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiToken(Base):
    """An API token: shown once when created, stored only as its SHA-256."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))  # to tell tokens apart in listings
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(100))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuditLog(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(100))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
