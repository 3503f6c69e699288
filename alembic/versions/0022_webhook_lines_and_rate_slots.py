"""webhook lines and rate slots: waiting deliveries are parked, rate slots reserved

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-04 19:40:00

A delivery waiting behind an earlier one of its line (ordered endpoint, recovery) has no
next_attempt_at until the head settles and releases it, so the claim's index never walks
it; the line index gains the status, so a line's head is one probe. A delivery put off
by its endpoint's rate holds a reserved slot (`rate_slot`, partial index on the slot
time: the next slot is one probe).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0022'
down_revision: str | None = '0021'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEQUENCED = sa.text('sequence_key IS NOT NULL')


def upgrade() -> None:
    with op.batch_alter_table('webhook_deliveries') as batch:
        batch.add_column(sa.Column('rate_slot', sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    op.drop_index('ix_webhook_deliveries_sequence', table_name='webhook_deliveries')
    op.create_index('ix_webhook_deliveries_sequence', 'webhook_deliveries',
                    ['endpoint_id', 'sequence_key', 'status', 'id'], unique=False,
                    postgresql_where=SEQUENCED, sqlite_where=SEQUENCED)
    op.create_index('ix_webhook_deliveries_rate_slot', 'webhook_deliveries',
                    ['next_attempt_at'], unique=False,
                    postgresql_where=sa.text('rate_slot'), sqlite_where=sa.text('rate_slot'))
    # Park what already waits behind an earlier pending delivery of its line.
    op.execute(
        "UPDATE webhook_deliveries SET next_attempt_at = NULL "
        "WHERE status = 'pending' AND sequence_key IS NOT NULL AND EXISTS ("
        "SELECT 1 FROM webhook_deliveries AS earlier "
        "WHERE earlier.endpoint_id = webhook_deliveries.endpoint_id "
        "AND earlier.sequence_key = webhook_deliveries.sequence_key "
        "AND earlier.status = 'pending' AND earlier.id < webhook_deliveries.id)")


def downgrade() -> None:
    op.execute("UPDATE webhook_deliveries SET next_attempt_at = CURRENT_TIMESTAMP "
               "WHERE status = 'pending' AND next_attempt_at IS NULL")
    op.drop_index('ix_webhook_deliveries_rate_slot', table_name='webhook_deliveries')
    op.drop_index('ix_webhook_deliveries_sequence', table_name='webhook_deliveries')
    op.create_index('ix_webhook_deliveries_sequence', 'webhook_deliveries',
                    ['endpoint_id', 'sequence_key', 'id'], unique=False,
                    postgresql_where=SEQUENCED, sqlite_where=SEQUENCED)
    with op.batch_alter_table('webhook_deliveries') as batch:
        batch.drop_column('rate_slot')
