"""connection last used index

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24 19:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


INDEX = "ix_connections_environment_id_last_used_at_id"


def upgrade() -> None:
    # The environment overview sorted by last use (never-used rows and used rows each
    # walk this index in order; see services/registry/overview/repository.py).
    op.create_index(INDEX, "connections", ["environment_id", "last_used_at", "id"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="connections")
