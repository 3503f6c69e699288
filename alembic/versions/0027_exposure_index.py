"""Who can read me at a million connections (issue 16, item 3): `connection_companies`
is indexed by (company_id, connection_id) instead of company_id alone, so one
company's covering connections come in connection order and a page stops early.

Revision ID: 0027
Revises: 0026
"""

from __future__ import annotations

from alembic import op

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("connection_companies") as batch:
        batch.create_index("ix_connection_companies_company_id_connection_id",
                           ["company_id", "connection_id"])
        batch.drop_index("ix_connection_companies_company_id")


def downgrade() -> None:
    with op.batch_alter_table("connection_companies") as batch:
        batch.create_index("ix_connection_companies_company_id", ["company_id"])
        batch.drop_index("ix_connection_companies_company_id_connection_id")
