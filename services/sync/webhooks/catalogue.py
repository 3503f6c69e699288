"""The event types an endpoint may subscribe to: the catalogue's and `connection.*`."""

from __future__ import annotations

from shared.scopes import SCOPES

CONNECTION_EVENTS = frozenset({
    "connection.created", "connection.updated", "connection.suspended", "connection.resumed",
    "connection.revoked",
})
DATA_EVENTS = frozenset(event for scope in SCOPES.values() for event in scope.events)
EVENT_TYPES = CONNECTION_EVENTS | DATA_EVENTS
TEST_EVENT = "webhook.test"
