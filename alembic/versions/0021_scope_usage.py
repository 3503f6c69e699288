"""scope usage: per connection and scope, when a call of the data API last needed it

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04 19:30:00

`connections.scope_used_at` maps each consented scope to the time (ISO 8601, UTC) a call
last needed it; the worker merges the uses noted in Redis into it (shared/last_used.py),
like `last_used_at`. Manage apps, the partner's view and the overview show it and flag
the scopes that go unused.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0021'
down_revision: str | None = '0020'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('connections') as batch_op:
        batch_op.add_column(sa.Column('scope_used_at', sa.JSON(), nullable=False,
                                      server_default='{}'))


def downgrade() -> None:
    with op.batch_alter_table('connections') as batch_op:
        batch_op.drop_column('scope_used_at')
