"""Job names and payloads: the contract between the services and the worker.

Names are "<domain>.<verb>"; jobs take ids, never objects, and open their own session.
A job enqueued while a request is handled also takes that request's id as the keyword
`request_id` (see `request_context`); the worker binds it to the job's log lines.
"""

from __future__ import annotations

from shared.request_id import current_request_id

MAINTENANCE_PURGE_EXPIRED = "maintenance.purge_expired"

# How long spent or expired codes and refresh tokens are kept before they are purged:
# long enough that a replay is still recognised as one and revokes its family.
PURGE_GRACE_SECONDS = 24 * 3600

EVENTS_RELAY = "events.relay"
WEBHOOKS_DELIVER = "webhooks.deliver"
WEBHOOKS_SWEEP = "webhooks.sweep"
CONNECTIONS_RECORD_LAST_USED = "connections.record_last_used"


def delivery_job_id(delivery_id: object, attempt: int) -> str:
    """The arq job id of one delivery attempt: arq refuses a second job with it."""
    return f"delivery:{delivery_id}:{attempt}"


def request_context() -> dict[str, str]:
    """The keyword arguments that carry the current request's id into a job (none
    outside a request)."""
    request_id = current_request_id()
    return {"request_id": request_id} if request_id else {}
