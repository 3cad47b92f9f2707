"""review: near misses for analysts, and the suppressions their rejections leave

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 04:05:00

``review_items``: PDQ distances in the review band above a list's threshold (never
notices); ``suppressions``: (image SHA-256, entry) pairs an analyst rejected, never
recorded again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "review_items",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("sighting_id", sa.Integer(), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("distance", sa.Integer(), nullable=False),
        sa.Column("variant", sa.String(16), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("decided_by", sa.String(100), nullable=True),
        sa.Column("decided_at", TS, nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["sighting_id"], ["sightings.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["entry_id"], ["hash_entries.id"], ondelete="CASCADE"),
        sa.UniqueConstraint("sighting_id", "entry_id", name="uq_review"),
    )
    op.create_index("ix_review_items_state", "review_items", ["state"])
    op.create_table(
        "suppressions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("image_sha256", sa.String(64), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("review_id", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["entry_id"], ["hash_entries.id"], ondelete="CASCADE"),
        sa.UniqueConstraint("image_sha256", "entry_id", name="uq_suppression"),
    )


def downgrade() -> None:
    op.drop_table("suppressions")
    op.drop_index("ix_review_items_state", table_name="review_items")
    op.drop_table("review_items")
