"""list versions: every change to a known-hash list is a numbered version that can be undone

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 04:10:00

Adds ``hash_list_versions`` (one row per import, retraction, rollback or deletion, with its
counts and the source file's SHA-256), ``hash_entries.version`` (the version that first
added the entry), the state an entry had before each logged change (``hash_changes``:
``version_id``, ``was_deleted``, ``old_*``) so a rollback can restore it, and
``hash_lists.deleted_at``. Lists imported before this revision get version 1: their
current state, which is as far back as a rollback can go.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    versions = op.create_table(
        "hash_list_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(100), nullable=True),
        sa.Column("format", sa.String(32), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("source_sha256", sa.String(64), nullable=True),
        sa.Column("forced", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["list_id"], ["hash_lists.id"], ondelete="CASCADE"),
        sa.UniqueConstraint("list_id", "number", name="uq_list_version"),
    )
    with op.batch_alter_table("hash_entries") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), nullable=True))
    with op.batch_alter_table("hash_lists") as batch:
        batch.add_column(sa.Column("deleted_at", TS, nullable=True))
    with op.batch_alter_table("hash_changes") as batch:
        batch.add_column(sa.Column("version_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("was_deleted", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("old_category", sa.String(64), nullable=True))
        batch.add_column(sa.Column("old_external_id", sa.String(200), nullable=True))
        batch.add_column(sa.Column("old_threshold", sa.Integer(), nullable=True))
    op.create_index("ix_hash_changes_version_id", "hash_changes", ["version_id"])

    conn = op.get_bind()
    lists = sa.table(
        "hash_lists",
        sa.column("id", sa.Integer),
        sa.column("format", sa.String),
        sa.column("source", sa.Text),
        sa.column("updated_at", TS),
    )
    entries = sa.table(
        "hash_entries",
        sa.column("list_id", sa.Integer),
        sa.column("kind", sa.String),
        sa.column("deleted_at", TS),
        sa.column("version", sa.Integer),
    )
    for row in conn.execute(sa.select(lists)).mappings().all():
        active = dict(
            conn.execute(
                sa.select(entries.c.kind, sa.func.count())
                .where(entries.c.list_id == row["id"], entries.c.deleted_at.is_(None))
                .group_by(entries.c.kind)
            ).all()
        )
        conn.execute(
            versions.insert().values(
                list_id=row["id"],
                number=1,
                at=row["updated_at"],
                action="import",
                format=row["format"],
                source=row["source"],
                note="state when list versions were introduced",
                counts={"added": sum(active.values()), "active": active},
            )
        )
    conn.execute(entries.update().values(version=1))


def downgrade() -> None:
    op.drop_index("ix_hash_changes_version_id", table_name="hash_changes")
    with op.batch_alter_table("hash_changes") as batch:
        for column in ("old_threshold", "old_external_id", "old_category", "was_deleted"):
            batch.drop_column(column)
        batch.drop_column("version_id")
    with op.batch_alter_table("hash_lists") as batch:
        batch.drop_column("deleted_at")
    with op.batch_alter_table("hash_entries") as batch:
        batch.drop_column("version")
    op.drop_table("hash_list_versions")
