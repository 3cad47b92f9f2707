"""image queries: every PDQ query an image was matched with, packed, for later lists

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 03:45:00

Adds ``images.pdq_queries`` (matcher/variants.py: a few hundred bytes of raw hashes) so a
list imported after a crawl is matched against the images already seen without fetching
them again, ``matches.retroactive`` (found that way), and an index on
``sightings.image_id`` (from a matched image to where it was seen). Images stored before
this revision have no queries until a crawl fetches them again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("pdq_queries", sa.LargeBinary(), nullable=True))
    with op.batch_alter_table("matches") as batch:
        batch.add_column(
            sa.Column("retroactive", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_index("ix_sightings_image_id", "sightings", ["image_id"])


def downgrade() -> None:
    op.drop_index("ix_sightings_image_id", table_name="sightings")
    with op.batch_alter_table("matches") as batch:
        batch.drop_column("retroactive")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("pdq_queries")
