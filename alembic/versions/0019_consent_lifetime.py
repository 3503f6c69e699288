"""The consent lifetime (issue 19, item 1): environments may make connections expire
(`consent_lifetime_days`, and shorter lifetimes by scope sensitivity), and connections
carry `expires_at` (NULL: never), `renewed_at` and the expiry whose notice was sent.
Every existing row keeps no lifetime and no expiry.

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa

import shared.db.types
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels = None
depends_on = None


def _timestamp(name: str) -> sa.Column:
    return sa.Column(name, shared.db.types.UTCDateTime(timezone=True), nullable=True)


def upgrade() -> None:
    with op.batch_alter_table("environments") as batch:
        batch.add_column(sa.Column("consent_lifetime_days", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("consent_lifetime_days_by_sensitivity", sa.JSON(),
                                   nullable=True))
    with op.batch_alter_table("connections") as batch:
        batch.add_column(_timestamp("expires_at"))
        batch.add_column(_timestamp("renewed_at"))
        batch.add_column(_timestamp("expiry_notice_for"))
    op.create_index("ix_connections_environment_id_expires_at_id", "connections",
                    ["environment_id", "expires_at", "id"])
    op.create_index("ix_connections_expires_at", "connections", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_connections_expires_at", table_name="connections")
    op.drop_index("ix_connections_environment_id_expires_at_id", table_name="connections")
    with op.batch_alter_table("connections") as batch:
        batch.drop_column("expiry_notice_for")
        batch.drop_column("renewed_at")
        batch.drop_column("expires_at")
    with op.batch_alter_table("environments") as batch:
        batch.drop_column("consent_lifetime_days_by_sensitivity")
        batch.drop_column("consent_lifetime_days")
