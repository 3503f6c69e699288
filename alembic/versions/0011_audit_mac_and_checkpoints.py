"""audit chain MAC, attestation keys and signed audit checkpoints

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 16:00:00

The audit chain was plain SHA-256: anyone who could write to the database could
recompute it. From here on every link is an HMAC-SHA256 under a key derived from a vault
key (shared/audit_mac.py), named in the new `audit_events.mac_key_id`.

Existing events are re-chained here, under the key ring's active key, after their old
SHA-256 chain has been checked: an environment whose old chain is intact gets MACs for
every event (same order, same content; only prev_hash, hash and mac_key_id change) and
its head moves to the new last hash. An environment whose old chain is already broken
is left as it is and named on stderr: its unkeyed rows stay visible to
`koppel audit verify` as faults, so a log tampered with before this migration is
never laundered into one that verifies. The key ring is the one `koppel db upgrade`
uses (the configured KOPPEL_KEYS or key file); with events to re-chain and no key ring,
the migration stops and changes nothing.

New tables: `attestation_keys` (the signing keys of Koppel's statements, apart from the
token signing keys) and `audit_checkpoints` (the signed chain heads).
"""

import hashlib
import hmac
import json
import sys
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import context, op
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

import shared.db.types

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS = "0" * 64
# Frozen here as shared/audit_mac.py derives it when this migration was written.
MAC_INFO = b"koppel.audit-chain.v1"

events = sa.table(
    "audit_events",
    sa.column("id", sa.Uuid()), sa.column("environment_id", sa.Uuid()),
    sa.column("seq", sa.Integer()), sa.column("action", sa.String()),
    sa.column("actor_type", sa.String()), sa.column("actor_id", sa.String()),
    sa.column("subject_type", sa.String()), sa.column("subject_id", sa.String()),
    sa.column("details", sa.JSON()),
    sa.column("created_at", shared.db.types.UTCDateTime(timezone=True)),
    sa.column("prev_hash", sa.String()), sa.column("hash", sa.String()),
    sa.column("mac_key_id", sa.String()),
)
heads = sa.table(
    "audit_heads",
    sa.column("environment_id", sa.Uuid()), sa.column("seq", sa.Integer()),
    sa.column("hash", sa.String()),
)


def _canonical(row) -> str:
    content = {
        "id": str(row.id), "environment_id": str(row.environment_id), "seq": row.seq,
        "action": row.action, "actor_type": row.actor_type, "actor_id": row.actor_id,
        "subject_type": row.subject_type, "subject_id": row.subject_id,
        "details": row.details, "created_at": row.created_at.isoformat(),
    }
    return json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)


def _say(line: str) -> None:
    print(f"migration 0011: {line}", file=sys.stderr, flush=True)


def _keyring():
    """The key ring to chain with: given by the caller, else the configured one. Never a
    new one: without a key ring the migration stops rather than key old events with a
    key made up on the spot."""
    ring = context.config.attributes.get("keyring")
    if ring is not None:
        return ring
    from shared.config import get_settings
    from shared.vault import load_keyring

    return load_keyring(get_settings(), create=False)


def _old_chain_intact(rows, head) -> bool:
    prev, expected = GENESIS, 1
    for row in rows:
        link = hashlib.sha256((prev + _canonical(row)).encode()).hexdigest()
        if row.seq != expected or row.prev_hash != prev or row.hash != link:
            return False
        prev, expected = row.hash, expected + 1
    return head is not None and head.seq == expected - 1 and head.hash == prev


def _rechain(bind) -> None:
    environment_ids = bind.execute(sa.select(events.c.environment_id).distinct()).scalars().all()
    if not environment_ids:
        return
    ring = _keyring()
    key_id = ring.active_key_id
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=MAC_INFO).derive(ring.active_key)
    for environment_id in environment_ids:
        rows = bind.execute(sa.select(events).where(events.c.environment_id == environment_id)
                            .order_by(events.c.seq)).all()
        head = bind.execute(sa.select(heads).where(
            heads.c.environment_id == environment_id)).first()
        if not _old_chain_intact(rows, head):
            _say(f"environment {environment_id}: its audit chain was already broken; "
                 "left unkeyed for `koppel audit verify` to report")
            continue
        prev = GENESIS
        for row in rows:
            link = hmac.new(key, (prev + _canonical(row)).encode(), hashlib.sha256).hexdigest()
            bind.execute(events.update().where(events.c.id == row.id).values(
                prev_hash=prev, hash=link, mac_key_id=key_id))
            prev = link
        bind.execute(heads.update().where(heads.c.environment_id == environment_id)
                     .values(hash=prev))
        _say(f"environment {environment_id}: {len(rows)} audit event(s) re-chained "
             f"under key {key_id}")


def upgrade() -> None:
    op.create_table('attestation_keys',
    sa.Column('kid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('alg', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('public_jwk', sa.JSON(), nullable=False),
    sa.Column('private_key_ciphertext', sa.LargeBinary(), nullable=False),
    sa.Column('private_key_key_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', shared.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('retired_at', shared.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('kid', name=op.f('pk_attestation_keys'))
    )
    with op.batch_alter_table('attestation_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attestation_keys_private_key_key_id'),
                              ['private_key_key_id'], unique=False)
    op.create_table('audit_checkpoints',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('environment_id', sa.Uuid(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('kid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('jws', sa.Text(), nullable=False),
    sa.Column('created_at', shared.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['environment_id'], ['environments.id'],
                            name=op.f('fk_audit_checkpoints_environment_id_environments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_checkpoints'))
    )
    with op.batch_alter_table('audit_checkpoints', schema=None) as batch_op:
        batch_op.create_index('ix_audit_checkpoints_environment_id_id',
                              ['environment_id', 'id'], unique=False)
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mac_key_id', sqlmodel.sql.sqltypes.AutoString(length=64),
                                      nullable=True))
    _rechain(op.get_bind())


def downgrade() -> None:
    # The MACs stay in `hash`; the chain can no longer be verified with plain SHA-256.
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_column('mac_key_id')
    with op.batch_alter_table('audit_checkpoints', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_checkpoints_environment_id_id')
    op.drop_table('audit_checkpoints')
    with op.batch_alter_table('attestation_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attestation_keys_private_key_key_id'))
    op.drop_table('attestation_keys')
