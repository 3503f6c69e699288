"""Least-privilege hints (issue 19 item 4): when each consented scope was last needed by
a call of the data API (`Connection.scope_used_at`, flushed by the worker from the notes of
shared/last_used.py), and which scopes go unused: granted more than 30 days ago (a
connection's scopes count as granted at its `created_at`) and not needed for 90 days.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel

from shared.models import Connection, ConnectionStatus

GRANTED_FOR = timedelta(days=30)
UNUSED_FOR = timedelta(days=90)


class ScopeUse(BaseModel):
    scope: str
    last_used_at: datetime | None


def last_uses(connection: Connection) -> dict[str, datetime | None]:
    """Each scope the connection grants now, with its last use (None: never)."""
    seen = connection.scope_used_at or {}
    return {scope: datetime.fromisoformat(seen[scope]) if scope in seen else None
            for scope in connection.scopes}


def scope_usage(connection: Connection) -> list[ScopeUse]:
    return [ScopeUse(scope=scope, last_used_at=at)
            for scope, at in last_uses(connection).items()]


def unused_scopes(connection: Connection, now: datetime) -> list[str]:
    """The scopes of a live connection granted more than 30 days ago and unused for 90
    days (never, or last before `now` - 90 days); none for a revoked connection."""
    if connection.status == ConnectionStatus.REVOKED or connection.created_at > now - GRANTED_FOR:
        return []
    return [scope for scope, at in last_uses(connection).items()
            if at is None or at < now - UNUSED_FOR]
