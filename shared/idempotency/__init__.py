"""Idempotent writes: every POST and PATCH of registry and sync accepts an
`Idempotency-Key` (Stripe's semantics). See `middleware.py` for how a request flows and
docs/architecture.md for the guarantee."""

from shared.idempotency.middleware import IdempotencyMiddleware, held_transaction
from shared.idempotency.openapi import document_idempotency_key
from shared.idempotency.store import purge_expired

__all__ = ["IdempotencyMiddleware", "document_idempotency_key", "held_transaction",
           "purge_expired"]
