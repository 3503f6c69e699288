"""Apps: the algorithm a client registered for its ID tokens (RFC 7591
`id_token_signed_response_alg`; NULL: the server's default, RS256), and where its
browser may go after an RP-initiated logout (`post_logout_redirect_uris`).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("apps") as batch:
        batch.add_column(sa.Column("id_token_signed_response_alg", sa.String(length=10),
                                   nullable=True))
        batch.add_column(sa.Column("post_logout_redirect_uris", sa.JSON(), nullable=False,
                                   server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("apps") as batch:
        batch.drop_column("post_logout_redirect_uris")
        batch.drop_column("id_token_signed_response_alg")
