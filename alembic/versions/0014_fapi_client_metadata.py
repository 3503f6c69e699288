"""Apps: the FAPI 2.0 client metadata. `require_pushed_authorization_requests` (RFC 9126
section 6: the client's authorization requests must come through PAR) and
`dpop_bound_access_tokens` (RFC 9449 section 5.2: the client's access tokens are always
DPoP-bound). Both false for every existing app.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("apps") as batch:
        batch.add_column(sa.Column("require_pushed_authorization_requests", sa.Boolean(),
                                   nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("dpop_bound_access_tokens", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("apps") as batch:
        batch.drop_column("dpop_bound_access_tokens")
        batch.drop_column("require_pushed_authorization_requests")
