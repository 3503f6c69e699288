"""Approval requests (issue 19, item 3): an app's entry in the environment policy has a
state (`allowed`, `approval_required` or `blocked`) instead of `blocked: true/false`
(blocked rows become `blocked`, the others `allowed`); environments get a default app
state (`allowed`) and the templates that may request an app (NULL: the consent
templates); connections record who approved them; consent requests and their companies.

Revision ID: 0024
Revises: 0023
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel

import shared.db.types
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels = None
depends_on = None


def _time(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, shared.db.types.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("environment_app_policies") as batch:
        batch.add_column(sa.Column("state", sa.String(length=20), nullable=False,
                                   server_default="allowed"))
    op.execute("UPDATE environment_app_policies SET state = 'blocked' WHERE blocked")
    with op.batch_alter_table("environment_app_policies") as batch:
        batch.alter_column("state", server_default=None)
        batch.drop_column("blocked")
    with op.batch_alter_table("environments") as batch:
        batch.add_column(sa.Column("default_app_state", sa.String(length=20), nullable=False,
                                   server_default="allowed"))
        batch.add_column(sa.Column("approval_request_templates", sa.JSON(), nullable=True))
    with op.batch_alter_table("environments") as batch:
        batch.alter_column("default_app_state", server_default=None)
    with op.batch_alter_table("connections") as batch:
        batch.add_column(sa.Column("approved_by",
                                   sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
    op.create_table(
        "consent_requests",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("environment_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("app_id", sa.Uuid(), nullable=False),
        sa.Column("debtor_id", sa.Uuid(), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("justification", sqlmodel.sql.sqltypes.AutoString(length=1000),
                  nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        _time("created_at"),
        _time("updated_at"),
        _time("expires_at"),
        sa.Column("decided_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        _time("decided_at", nullable=True),
        sa.Column("decision_reason", sqlmodel.sql.sqltypes.AutoString(length=1000),
                  nullable=True),
        sa.Column("connection_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(["environment_id"], ["environments.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"]),
        sa.ForeignKeyConstraint(["debtor_id"], ["debtors.id"]),
        sa.ForeignKeyConstraint(["connection_id"], ["connections.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_consent_requests_environment_id_id", "consent_requests",
                    ["environment_id", "id"])
    op.create_index("ix_consent_requests_user_id_id", "consent_requests", ["user_id", "id"])
    op.create_index("ix_consent_requests_debtor_id_id", "consent_requests",
                    ["debtor_id", "id"])
    op.create_index("ix_consent_requests_app_id", "consent_requests", ["app_id"])
    op.create_table(
        "consent_request_companies",
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("company_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["consent_requests.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["company_id"], ["companies.id"]),
        sa.PrimaryKeyConstraint("request_id", "company_id"),
    )
    op.create_index("ix_consent_request_companies_company_id", "consent_request_companies",
                    ["company_id"])


def downgrade() -> None:
    op.drop_table("consent_request_companies")
    op.drop_table("consent_requests")
    with op.batch_alter_table("connections") as batch:
        batch.drop_column("approved_by")
    with op.batch_alter_table("environments") as batch:
        batch.drop_column("approval_request_templates")
        batch.drop_column("default_app_state")
    with op.batch_alter_table("environment_app_policies") as batch:
        batch.add_column(sa.Column("blocked", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    op.execute("UPDATE environment_app_policies SET blocked = (state = 'blocked')")
    with op.batch_alter_table("environment_app_policies") as batch:
        batch.alter_column("blocked", server_default=None)
        batch.drop_column("state")
