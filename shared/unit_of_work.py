"""What a transaction asks to happen once it has committed: one unit of work per session.

While a transaction runs, code notes on its session what must follow a successful commit:
a status to publish (shared/status.py), a nudge of the outbox relay (every outbox event,
shared/outbox.py), a webhook delivery attempt to enqueue, a use of a connection
(shared/last_used.py), a user whose login sessions end (shared/sessions.py), the data
accesses of a data API call (shared/data_access.py). The
session's owner (a request's session dependency, a job, a command) commits, then takes
the unit off the session and flushes it. A rolled-back transaction's notes go with its
session, never flushed.

The notes live in `session.info`, which a sync `Session` and an `AsyncSession` share, so
the same calls serve the auth service's thread-pool work and async code alike.

A change to an app's row (any ORM write: registration, RFC 7592, suspension, the command
line) is noted on its own, by a flush hook on every session, so that no writer can
forget it: the auth service keeps client rows per process until told they changed
(shared/status.py, `client_key`). A Core UPDATE or DELETE of `apps` must note it by hand
(`unit_of_work(session).client_changed(client_id)`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError
from sqlalchemy import event, inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from shared.data_access import Access, note_accesses
from shared.jobs import enqueue_deliveries, nudge, nudge_at
from shared.last_used import record_use
from shared.models import App
from shared.sessions import end_user_sessions
from shared.status import Subject, publish_async

log = structlog.get_logger("koppel.unit_of_work")

KEY = "koppel_unit_of_work"


@dataclass
class UnitOfWork:
    """The after-commit work one transaction has noted so far."""

    statuses: list[tuple[Subject, str | uuid.UUID, bool]] = field(default_factory=list)
    wants_nudge: bool = False
    deliveries: list[tuple[uuid.UUID, int, datetime | None]] = field(default_factory=list)
    wake_at: datetime | None = None
    used_connections: list[uuid.UUID] = field(default_factory=list)
    signed_out: set[str] = field(default_factory=set)
    accesses: list[Access] = field(default_factory=list)
    changed_clients: set[str] = field(default_factory=set)

    def publish_status(self, subject: Subject, ident: str | uuid.UUID, active: bool) -> None:
        """Publish this status of a connection, user, token family or app."""
        self.statuses.append((subject, ident, active))

    def client_changed(self, client_id: str) -> None:
        """Tell the auth services that this client's row changed (noted by itself for
        every ORM write to an app)."""
        self.changed_clients.add(client_id)

    def nudge_relay(self) -> None:
        """Ask the worker to relay the transaction's outbox events now."""
        self.wants_nudge = True

    def enqueue_delivery(self, delivery_id: uuid.UUID, attempt: int,
                         defer_until: datetime | None = None) -> None:
        """Enqueue attempt `attempt` of a webhook delivery (deferred until a time, if given)."""
        self.deliveries.append((delivery_id, attempt, defer_until))

    def nudge_relay_at(self, at: datetime) -> None:
        """Ask the worker to run the dispatcher at `at` (the earliest asked for: one
        deferred job, however many deliveries wait for a slot)."""
        if self.wake_at is None or at < self.wake_at:
            self.wake_at = at

    def sign_out(self, user_id: uuid.UUID) -> None:
        """End every login session of the user (shared/sessions.py)."""
        self.signed_out.add(str(user_id))

    def record_use(self, connection_id: uuid.UUID) -> None:
        """Note that the connection was used (its refresh token redeemed)."""
        self.used_connections.append(connection_id)

    def note_access(self, access: Access) -> None:
        """Count a data API call's access to employees' data in the data-access log."""
        self.accesses.append(access)

    async def flush(self, client: aioredis.Redis) -> None:
        """Do the noted work; call it once, after the commit.

        Uses and data accesses are noted, the relay nudged and the deliveries enqueued
        without raising: the sweeper catches up what is lost. Publishing the statuses raises Redis's
        errors or OSError, which the owner answers (a 503, a note on the command line),
        and then neither the nudge nor the deliveries are sent; nor are sessions ended,
        which raises the same way. A changed client that cannot be announced is only
        logged: the write is done (a registration's new secret must reach its caller),
        and the auth services keep a client row at most MAX_AGE_S
        (services/auth/oauth2/client_cache.py)."""
        for connection_id in self.used_connections:
            await record_use(client, connection_id)
        if self.accesses:
            await note_accesses(client, self.accesses)
        if self.statuses:
            await publish_async(client, self.statuses)
        if self.changed_clients:
            await _announce_clients(client, sorted(self.changed_clients))
        if self.signed_out:
            await end_user_sessions(client, sorted(self.signed_out))
        if self.wants_nudge:
            await nudge(client)
        if self.deliveries:
            await enqueue_deliveries(client, self.deliveries)
        if self.wake_at is not None:
            await nudge_at(client, self.wake_at)

    @classmethod
    def detach(cls, session: Session | AsyncSession) -> UnitOfWork:
        """The session's unit of work, taken off it (an empty one if nothing was noted):
        what the session's owner flushes after the commit."""
        return session.info.pop(KEY, None) or cls()


def unit_of_work(session: Session | AsyncSession) -> UnitOfWork:
    """The unit of work of the session's transaction, on which to note after-commit work."""
    return session.info.setdefault(KEY, UnitOfWork())


async def _announce_clients(client: aioredis.Redis, client_ids: list[str]) -> None:
    try:
        await publish_async(client, (), client_ids)
    except (RedisError, OSError) as exc:
        log.warning("changed clients not announced: auth services keep their rows until "
                    "they expire", clients=len(client_ids), error=type(exc).__name__)


@event.listens_for(Session, "before_flush")
def _note_app_writes(session: Session, _context, _instances) -> None:
    """Note every app row this flush changes or deletes (shared/status.py `client_key`);
    a new one needs no announcement, since no process keeps a client it did not find."""
    for row in (*session.dirty, *session.deleted):
        if isinstance(row, App):
            work = unit_of_work(session)
            work.client_changed(row.client_id)
            # A client id changed in place: the old one's cached row goes too.
            for old in inspect(row).attrs.client_id.history.deleted or ():
                work.client_changed(old)
