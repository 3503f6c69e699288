"""Database access: engines, session factories, the model base and column types."""

from shared.db.base import metadata
from shared.db.engine import (
    async_session_factory,
    create_async_db_engine,
    create_sync_engine,
    sync_session_factory,
)
from shared.db.types import UTCDateTime, utcnow, uuid7

__all__ = [
    "UTCDateTime",
    "async_session_factory",
    "create_async_db_engine",
    "create_sync_engine",
    "metadata",
    "sync_session_factory",
    "utcnow",
    "uuid7",
]
