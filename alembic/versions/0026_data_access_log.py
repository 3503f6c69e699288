"""The data-access log (issue 16, item 2): per connection (or first-party app), employee,
scope, action and UTC day, how many data API calls and the first and last; and the
batches of notes the worker's flush has applied (so none is applied twice).

Revision ID: 0026
Revises: 0025
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel

import shared.db.types
from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels = None
depends_on = None


def _time(name: str) -> sa.Column:
    return sa.Column(name, shared.db.types.UTCDateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "data_access_log",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("environment_id", sa.Uuid(), nullable=False),
        sa.Column("employee_id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("connection_id", sa.Uuid(), nullable=True),
        sa.Column("first_party", sa.Boolean(), nullable=False),
        sa.Column("scope", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("action", sa.String(length=10), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        _time("first_at"),
        _time("last_at"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_data_access_log_employee_id_day_id", "data_access_log",
                    ["employee_id", "day", "id"])
    op.create_index("ix_data_access_log_day", "data_access_log", ["day"])
    op.create_table(
        "data_access_batches",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        _time("applied_at"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_data_access_batches_applied_at", "data_access_batches",
                    ["applied_at"])


def downgrade() -> None:
    op.drop_table("data_access_batches")
    op.drop_table("data_access_log")
