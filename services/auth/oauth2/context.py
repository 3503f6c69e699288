"""What one request to the authorization server works with."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis
from sqlalchemy import Connection as DbConnection
from sqlmodel import Session

from shared.config import Settings
from shared.db.types import utcnow
from shared.signing import Signer
from shared.vault import KeyRing


@dataclass
class AuthContext:
    """A sync session plus what the grants need. What must follow the commit (statuses,
    the relay's nudge, uses of connections) goes on the session's unit of work
    (shared/unit_of_work.py)."""

    session: Session
    settings: Settings
    keyring: KeyRing
    signer: Signer
    redis: redis.Redis
    client_address: str = "-"
    now: datetime = field(default_factory=utcnow)
    # Clients looked up in this request, by client id (None: no such client).
    clients: dict[str, Any] = field(default_factory=dict)
    # Read-only work on PostgreSQL: statements run without a transaction (no BEGIN and
    # COMMIT), on a connection taken from the pool only when the first one runs.
    autocommit: bool = False
    _connection: DbConnection | None = None

    def connection(self) -> DbConnection:
        """The session's connection (its transaction), for prepared Core statements."""
        if self._connection is None or self._connection.closed:
            if self.autocommit and not self.session.in_transaction():
                self._connection = self.session.connection(
                    execution_options={"isolation_level": "AUTOCOMMIT"})
            else:
                self._connection = self.session.connection()
        return self._connection
