"""The event types an endpoint may subscribe to, and those of the change feed: the event
catalogue's (shared/events.py)."""

from __future__ import annotations

from shared.events import CATALOGUE, SUBSCRIBABLE, TEST_EVENT

CONNECTION_EVENTS = frozenset(name for name in SUBSCRIBABLE if name.startswith("connection."))
DATA_EVENTS = SUBSCRIBABLE - CONNECTION_EVENTS
EVENT_TYPES = SUBSCRIBABLE
__all__ = ["CATALOGUE", "CONNECTION_EVENTS", "DATA_EVENTS", "EVENT_TYPES", "TEST_EVENT"]
