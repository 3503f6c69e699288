"""Signed consent receipts (issue 16, item 1): `consent_receipts`, one per consent act
on a connection, chained per connection (unique connection_id, seq); and
`scope_wordings`, each version of the scope wording a receipt carries, under the SHA-256
of its canonical JSON (rows are only ever added).

Revision ID: 0025
Revises: 0024
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel

import shared.db.types
from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scope_wordings",
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("created_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_scope_wordings")),
    )
    op.create_table(
        "consent_receipts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("connection_id", sa.Uuid(), nullable=False),
        sa.Column("environment_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("act", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("collection_method", sqlmodel.sql.sqltypes.AutoString(length=20),
                  nullable=False),
        sa.Column("issued_at", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("previous_receipt_id", sa.Uuid(), nullable=True),
        sa.Column("lang", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("wording_sha256", sqlmodel.sql.sqltypes.AutoString(length=64),
                  nullable=False),
        sa.Column("kid", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("jws", sa.Text(), nullable=False),
        sa.Column("partner_jws", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["connection_id"], ["connections.id"],
                                name=op.f("fk_consent_receipts_connection_id_connections")),
        sa.ForeignKeyConstraint(["environment_id"], ["environments.id"],
                                name=op.f("fk_consent_receipts_environment_id_environments")),
        sa.ForeignKeyConstraint(["wording_sha256"], ["scope_wordings.sha256"],
                                name=op.f("fk_consent_receipts_wording_sha256_scope_wordings")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_receipts")),
    )
    with op.batch_alter_table("consent_receipts", schema=None) as batch_op:
        batch_op.create_index("uq_consent_receipts_connection_id_seq",
                              ["connection_id", "seq"], unique=True)
        batch_op.create_index(batch_op.f("ix_consent_receipts_environment_id"),
                              ["environment_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("consent_receipts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consent_receipts_environment_id"))
        batch_op.drop_index("uq_consent_receipts_connection_id_seq")
    op.drop_table("consent_receipts")
    op.drop_table("scope_wordings")
