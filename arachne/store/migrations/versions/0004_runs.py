"""runs: a campaign is crawled in runs, each with its own frontier, seen-sets and counters

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 00:10:00

Adds ``runs`` and ``sightings.run`` (the run that last fetched the URL). A campaign that was
crawled before runs existed gets run 1 (done if the campaign was, else stopped: the next
crawl resumes it, finds its frontier empty and finishes it), and its sightings belong to it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    runs = op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], ondelete="CASCADE"),
        sa.UniqueConstraint("campaign_id", "number", name="uq_run_number"),
    )
    with op.batch_alter_table("sightings") as batch:
        batch.add_column(sa.Column("run", sa.Integer(), nullable=True))

    campaigns = sa.table(
        "campaigns",
        sa.column("id", sa.Integer),
        sa.column("status", sa.String),
        sa.column("created_at", TS),
        sa.column("started_at", TS),
        sa.column("finished_at", TS),
        sa.column("stats", sa.JSON),
    )
    conn = op.get_bind()
    rows = (
        conn.execute(sa.select(campaigns).where(campaigns.c.status != "created")).mappings().all()
    )
    for c in rows:
        conn.execute(
            runs.insert().values(
                campaign_id=c["id"],
                number=1,
                status="done" if c["status"] == "done" else "stopped",
                started_at=c["started_at"] or c["created_at"],
                finished_at=c["finished_at"],
                stats=c["stats"] or {},
            )
        )
    sightings = sa.table("sightings", sa.column("run", sa.Integer))
    conn.execute(sightings.update().values(run=1))


def downgrade() -> None:
    with op.batch_alter_table("sightings") as batch:
        batch.drop_column("run")
    op.drop_table("runs")
