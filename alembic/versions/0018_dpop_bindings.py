"""DPoP (RFC 9449) bindings: the key thumbprint (`jkt`) an authorization code is bound to
by the authorization request's `dpop_jkt` (section 10), and the one a token family's
refresh tokens are bound to (public clients, section 5). Empty for every existing row.

Revision ID: 0018
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision: str = "0018"
down_revision: str | None = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("authorization_codes") as batch:
        batch.add_column(sa.Column("dpop_jkt", sa.String(length=43), nullable=True))
    with op.batch_alter_table("token_families") as batch:
        batch.add_column(sa.Column("dpop_jkt", sa.String(length=43), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("token_families") as batch:
        batch.drop_column("dpop_jkt")
    with op.batch_alter_table("authorization_codes") as batch:
        batch.drop_column("dpop_jkt")
