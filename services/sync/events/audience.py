"""Which apps may see an event (docs/product.md 5.8): `connection.*` events go to the connection's
own app in any state; data events to every app with a live connection (ACTIVE and not
past its `expires_at`) that covers the event's debtor, company and one of the scopes
that carry the event type."""

from __future__ import annotations

import uuid

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.db.types import utcnow
from shared.models import Connection, ConnectionCompany, ConnectionStatus, Event
from shared.policy import coverage
from shared.scopes import event_scopes, grants


def is_connection_event(event_type: str) -> bool:
    return event_type.startswith("connection.")


async def audience(session: AsyncSession, event: Event,
                   app_ids: set[uuid.UUID] | None = None) -> set[uuid.UUID]:
    """The ids of the apps that may receive `event` (limited to `app_ids` if given)."""
    if is_connection_event(event.type):
        apps = {event.app_id} if event.app_id else set()
        return apps if app_ids is None else apps & app_ids
    scopes = event_scopes(event.type)
    if not scopes or event.debtor_id is None:
        return set()
    stmt = select(Connection).where(
        Connection.environment_id == event.environment_id,
        Connection.debtor_id == event.debtor_id,
        coverage.live(utcnow()),  # active and not past its expiry (the job may not have run)
    )
    if app_ids is not None:
        stmt = stmt.where(col(Connection.app_id).in_(app_ids))
    connections = [
        c for c in (await session.exec(stmt)).all()
        if any(grants(c.scopes, scope) for scope in scopes)
    ]
    if event.company_id is not None and connections:
        covered = select(ConnectionCompany.connection_id).where(
            ConnectionCompany.company_id == event.company_id,
            col(ConnectionCompany.connection_id).in_([c.id for c in connections]),
        )
        ids = set((await session.exec(covered)).all())
        connections = [c for c in connections if c.id in ids]
    return {c.app_id for c in connections}


async def still_visible(session: AsyncSession, event: Event, app_id: uuid.UUID) -> bool:
    """At send time: may the app still see the event? A revoked connection's waiting
    messages are dropped, except its own `connection.revoked`."""
    if is_connection_event(event.type):
        if event.type == "connection.revoked" or event.connection_id is None:
            return event.app_id == app_id
        connection = await session.get(Connection, event.connection_id)
        return (event.app_id == app_id and connection is not None
                and connection.status != ConnectionStatus.REVOKED)
    return app_id in await audience(session, event, {app_id})


class Visibility:
    """`still_visible` for many deliveries in one transaction: the audience of events
    with the same type, debtor and company is computed once."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._audiences: dict[tuple, set[uuid.UUID]] = {}

    async def __call__(self, event: Event, app_id: uuid.UUID) -> bool:
        if is_connection_event(event.type):
            return await still_visible(self.session, event, app_id)
        return app_id in await self.audience(event)

    async def audience(self, event: Event) -> set[uuid.UUID]:
        """`audience(session, event)`, cached for events that share its inputs."""
        if is_connection_event(event.type):
            return await audience(self.session, event)
        key = (event.type, event.environment_id, event.debtor_id, event.company_id)
        if key not in self._audiences:
            self._audiences[key] = await audience(self.session, event)
        return self._audiences[key]
