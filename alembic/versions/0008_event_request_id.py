"""event request id

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24 19:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The id of the API request whose change wrote the event (null for older rows and
    # for changes made outside a request): the worker logs its deliveries under it.
    with op.batch_alter_table('events') as batch_op:
        batch_op.add_column(sa.Column('request_id', sqlmodel.sql.sqltypes.AutoString(length=128),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('events') as batch_op:
        batch_op.drop_column('request_id')
