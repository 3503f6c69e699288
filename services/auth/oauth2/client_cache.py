"""What the client-authenticated endpoints (token, PAR, revocation, introspection) keep
per process between requests: client rows, and which clients are known not to be
locked out by failed authentications.

Both are kept the way the resource servers keep statuses (shared/status_mirror.py): one
connection per process asks Redis to report every change of the keys under two
prefixes, and an answer is trusted only until such a report arrives (or for
`MAX_AGE_S`, should reports stop while the connection looks alive):

- a client's row is dropped when its client key changes; every write to an app
  announces itself there after its commit (shared/unit_of_work.py, shared/status.py);
- "not locked out" holds until the failure counter of that client and address
  changes, which only a failed authentication does (`ratelimit.record`), anywhere.

So a successful request usually reads neither the client row nor the counter, and a
locked-out client is still refused at once, a correct credential included. Without the
connection (not up yet, lost, a URL it cannot track) every request reads both, as
before. Used from the event loop thread only.
"""

from __future__ import annotations

from typing import Any

from services.auth.client_credentials import FAILURE_PREFIX
from shared import ratelimit
from shared.status import CLIENT_PREFIX, client_key
from shared.status_mirror import MAX_AGE_S, StatusMirror

MAX_CLIENTS = 10_000


class ClientCache:
    def __init__(self, redis_url: str, *, max_age: float = MAX_AGE_S) -> None:
        self.mirror = StatusMirror(redis_url, max_age=max_age, prefixes=(
            CLIENT_PREFIX, ratelimit.redis_key(FAILURE_PREFIX)))
        self._clients: dict[str, Any] = {}

    async def ready(self) -> bool:
        """Whether the tracking connection is up (connecting it if it is not)."""
        return self.mirror.connected or await self.mirror.ensure_connected()

    def client(self, client_id: str) -> tuple[Any | None, int]:
        """(the kept client, 0), or (None, a ticket to pass to `keep` with the row read)."""
        key = client_key(client_id)
        ticket = self.mirror.lookup([key])
        if ticket is None:
            kept = self._clients.get(client_id)
            if kept is not None:
                return kept, 0
            self.mirror.forget([key])  # known unchanged, but no longer kept here
            ticket = self.mirror.lookup([key])
        return None, ticket or 0

    def keep(self, client_id: str, client: Any | None, ticket: int) -> None:
        """Keep the client read after `client(client_id)` gave `ticket`, unless its row
        changed since (the report arrived) or a later read is kept already."""
        if client is None or not ticket:
            return
        if len(self._clients) >= MAX_CLIENTS:
            self._clients.clear()
        if self.mirror.remember([client_key(client_id)], ticket):
            self._clients[client_id] = client

    def lock_ticket(self, failure_name: str) -> int | None:
        """None if `failure_name` (a `failure_key`) is known not to be locked out; else
        a ticket for `not_locked` once Redis said so."""
        return self.mirror.lookup([ratelimit.redis_key(failure_name)])

    def not_locked(self, failure_name: str, ticket: int) -> None:
        self.mirror.remember([ratelimit.redis_key(failure_name)], ticket)

    def failed(self, failure_name: str) -> None:
        """A failed authentication of this process: ask Redis again next time, without
        waiting for the report of the count it is about to raise."""
        self.mirror.forget([ratelimit.redis_key(failure_name)])

    def close(self) -> None:
        self.mirror.close()
        self._clients.clear()
