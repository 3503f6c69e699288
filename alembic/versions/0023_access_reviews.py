"""Access reviews (issue 19, item 2): a review of an environment's connections, and one
item per connection it covers, with the reviewer's (or the default's) decision.

Revision ID: 0023
Revises: 0022
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel

import shared.db.types
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels = None
depends_on = None


def _time(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, shared.db.types.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "access_reviews",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("environment_id", sa.Uuid(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("filter", sa.JSON(), nullable=False),
        sa.Column("reviewer", sa.String(length=20), nullable=False),
        sa.Column("default_decision", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        _time("due_at"),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        _time("created_at"),
        _time("completed_at", nullable=True),
        sa.ForeignKeyConstraint(["environment_id"], ["environments.id"]),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_access_reviews_environment_id_id", "access_reviews",
                    ["environment_id", "id"])
    op.create_index("ix_access_reviews_status_due_at", "access_reviews", ["status", "due_at"])
    op.create_table(
        "access_review_items",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("review_id", sa.Uuid(), nullable=False),
        sa.Column("environment_id", sa.Uuid(), nullable=False),
        sa.Column("connection_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("app_id", sa.Uuid(), nullable=False),
        sa.Column("decision", sa.String(length=10), nullable=True),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
        sa.Column("decided_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        _time("decided_at", nullable=True),
        _time("created_at"),
        sa.ForeignKeyConstraint(["review_id"], ["access_reviews.id"]),
        sa.ForeignKeyConstraint(["environment_id"], ["environments.id"]),
        sa.ForeignKeyConstraint(["connection_id"], ["connections.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_access_review_items_review_id_id", "access_review_items",
                    ["review_id", "id"])
    op.create_index("ix_access_review_items_user_id_id", "access_review_items",
                    ["user_id", "id"])
    op.create_index("ix_access_review_items_connection_id", "access_review_items",
                    ["connection_id"])


def downgrade() -> None:
    op.drop_table("access_review_items")
    op.drop_table("access_reviews")
