"""webhooks beyond HMAC: Ed25519 signatures, ordered delivery, a per-endpoint rate

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04 18:30:00

Webhook endpoints may sign with an Ed25519 key pair (Standard Webhooks `v1a`; the
private key sealed by the vault like the `whsec_` secret, a previous key beside it during
a rotation), deliver the events of one customer in order, and cap their delivery rate.
Deliveries that wait their turn carry a sequence key (partial index: only those rows).
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import shared.db.types

revision: str = '0020'
down_revision: str | None = '0019'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ENDPOINT_COLUMNS = [
    sa.Column('signature_scheme', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False,
              server_default='hmac-sha256'),
    sa.Column('signing_key_ciphertext', sa.LargeBinary(), nullable=True),
    sa.Column('signing_key_key_id', sqlmodel.sql.sqltypes.AutoString(length=64),
              nullable=True),
    sa.Column('public_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('previous_signing_key_ciphertext', sa.LargeBinary(), nullable=True),
    sa.Column('previous_signing_key_key_id', sqlmodel.sql.sqltypes.AutoString(length=64),
              nullable=True),
    sa.Column('previous_public_key', sqlmodel.sql.sqltypes.AutoString(length=64),
              nullable=True),
    sa.Column('previous_signing_key_expires_at',
              shared.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ordered', sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column('max_rate_per_second', sa.Integer(), nullable=True),
]


def upgrade() -> None:
    with op.batch_alter_table('webhook_endpoints') as batch:
        for column in ENDPOINT_COLUMNS:
            batch.add_column(column)
    with op.batch_alter_table('webhook_deliveries') as batch:
        batch.add_column(sa.Column('sequence_key', sqlmodel.sql.sqltypes.AutoString(length=80),
                                   nullable=True))
    op.create_index('ix_webhook_deliveries_sequence', 'webhook_deliveries',
                    ['endpoint_id', 'sequence_key', 'id'], unique=False,
                    postgresql_where=sa.text('sequence_key IS NOT NULL'),
                    sqlite_where=sa.text('sequence_key IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('ix_webhook_deliveries_sequence', table_name='webhook_deliveries')
    with op.batch_alter_table('webhook_deliveries') as batch:
        batch.drop_column('sequence_key')
    with op.batch_alter_table('webhook_endpoints') as batch:
        for column in reversed(ENDPOINT_COLUMNS):
            batch.drop_column(column.name)
