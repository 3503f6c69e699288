"""Environments: a partner's sandbox is an environment marked with the partner that owns
it (`sandbox_partner_id`; NULL for a customer's environment).

Revision ID: 0016
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision: str = "0016"
down_revision: str | None = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("environments") as batch:
        batch.add_column(sa.Column("sandbox_partner_id", sa.Uuid(), nullable=True))
        batch.create_foreign_key("fk_environments_sandbox_partner_id_partners", "partners",
                                 ["sandbox_partner_id"], ["id"])
        batch.create_index("ix_environments_sandbox_partner_id", ["sandbox_partner_id"])


def downgrade() -> None:
    with op.batch_alter_table("environments") as batch:
        batch.drop_index("ix_environments_sandbox_partner_id")
        batch.drop_constraint("fk_environments_sandbox_partner_id_partners",
                              type_="foreignkey")
        batch.drop_column("sandbox_partner_id")
