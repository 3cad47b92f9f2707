"""incidents, re-checks and contact resolution: the notice-until-removal loop

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 21:40:00

Adds incidents (one matched URL over time) and the notices that covered them, re-checks per
incident (the old per-notice ``rechecks`` table was never written, so it is recreated),
the RDAP answer cache, each host's resolution chain, and per-notice kind/tier/response.
Existing notices' single XARF document becomes a one-element list (one report per URL now).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("hosts") as batch:
        batch.add_column(sa.Column("country", sa.String(2), nullable=True))
        batch.add_column(sa.Column("language", sa.String(8), nullable=True))
        batch.add_column(sa.Column("network", sa.String(64), nullable=True))
        batch.add_column(sa.Column("cdn", sa.String(64), nullable=True))
        batch.add_column(sa.Column("contact_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("contact_chain", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("escalation", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("resolved_at", TS, nullable=True))

    with op.batch_alter_table("notices") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="notice"))
        batch.add_column(sa.Column("tier", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("contact_source", sa.String(32), nullable=True))
        batch.add_column(sa.Column("first_reference", sa.String(64), nullable=True))
        batch.add_column(sa.Column("language", sa.String(8), nullable=True))
        batch.add_column(sa.Column("response", sa.Text(), nullable=True))
        batch.add_column(sa.Column("next_attempt_at", TS, nullable=True))

    notices = sa.table("notices", sa.column("id", sa.Integer), sa.column("xarf", sa.JSON))
    conn = op.get_bind()
    for notice_id, xarf in conn.execute(sa.select(notices.c.id, notices.c.xarf)).all():
        if isinstance(xarf, dict):
            conn.execute(notices.update().where(notices.c.id == notice_id).values(xarf=[xarf]))

    op.create_table(
        "contact_cache",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("start_hex", sa.String(32), nullable=True),
        sa.Column("end_hex", sa.String(32), nullable=True),
        sa.Column("answer", sa.JSON(), nullable=False),
        sa.Column("fetched_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.UniqueConstraint("kind", "key", name="uq_contact_cache_key"),
    )
    op.create_index("ix_contact_cache_range", "contact_cache", ["kind", "version", "start_hex"])

    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "campaign_id",
            sa.Integer(),
            sa.ForeignKey("campaigns.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("host_id", sa.Integer(), sa.ForeignKey("hosts.id"), nullable=True),
        sa.Column("url_key", sa.String(40), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("page_url", sa.Text(), nullable=True),
        sa.Column(
            "sighting_id",
            sa.Integer(),
            sa.ForeignKey("sightings.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("entry_ids", sa.JSON(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("pdq", sa.String(64), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("first_noticed_at", TS, nullable=True),
        sa.Column("first_reference", sa.String(64), nullable=True),
        sa.Column("last_noticed_at", TS, nullable=True),
        sa.Column("notices_sent", sa.Integer(), nullable=False),
        sa.Column("next_notice_at", TS, nullable=True),
        sa.Column("last_checked_at", TS, nullable=True),
        sa.Column("next_check_at", TS, nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("first_failure_at", TS, nullable=True),
        sa.Column("removed_at", TS, nullable=True),
        sa.Column("removal_reason", sa.String(64), nullable=True),
        sa.Column("removal_seconds", sa.Float(), nullable=True),
        sa.Column("reappeared", sa.Integer(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("url_key", name="uq_incident_url"),
    )
    op.create_index("ix_incidents_campaign_id", "incidents", ["campaign_id"])
    op.create_index("ix_incidents_host", "incidents", ["host"])
    op.create_index("ix_incident_due_check", "incidents", ["state", "next_check_at"])
    op.create_index("ix_incident_due_notice", "incidents", ["state", "next_notice_at"])

    op.create_table(
        "notice_incidents",
        sa.Column(
            "notice_id",
            sa.Integer(),
            sa.ForeignKey("notices.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "incident_id",
            sa.Integer(),
            sa.ForeignKey("incidents.id", ondelete="CASCADE"),
            primary_key=True,
        ),
    )
    op.create_index("ix_notice_incidents_incident_id", "notice_incidents", ["incident_id"])

    op.drop_table("rechecks")
    op.create_table(
        "rechecks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "incident_id",
            sa.Integer(),
            sa.ForeignKey("incidents.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("checked_at", TS, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
    )
    op.create_index("ix_rechecks_incident_id", "rechecks", ["incident_id"])


def downgrade() -> None:
    op.drop_table("rechecks")
    op.create_table(
        "rechecks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "notice_id",
            sa.Integer(),
            sa.ForeignKey("notices.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("checked_at", TS, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
    )
    op.drop_table("notice_incidents")
    op.drop_table("incidents")
    op.drop_table("contact_cache")
    with op.batch_alter_table("notices") as batch:
        for name in (
            "next_attempt_at",
            "response",
            "language",
            "first_reference",
            "contact_source",
            "tier",
            "kind",
        ):
            batch.drop_column(name)
    with op.batch_alter_table("hosts") as batch:
        for name in (
            "resolved_at",
            "escalation",
            "contact_chain",
            "contact_reason",
            "cdn",
            "network",
            "language",
            "country",
        ):
            batch.drop_column(name)
