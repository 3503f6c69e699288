from pathlib import Path

from sqlalchemy import text

from shared.db.engine import (
    SQLITE_BUSY_TIMEOUT_MS,
    async_url,
    create_async_db_engine,
    create_sync_engine,
    sync_url,
)


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    engine = create_sync_engine(f"sqlite:///{tmp_path / 'k.db'}")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
            assert conn.execute(text("PRAGMA busy_timeout")).scalar_one() == SQLITE_BUSY_TIMEOUT_MS
            assert conn.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
    finally:
        engine.dispose()
    assert SQLITE_BUSY_TIMEOUT_MS >= 5000


async def test_the_async_sqlite_engine_is_configured_alike(tmp_path: Path) -> None:
    engine = create_async_db_engine(f"sqlite:///{tmp_path / 'k.db'}")
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar_one() == "wal"
            busy = (await conn.execute(text("PRAGMA busy_timeout"))).scalar_one()
            assert busy == SQLITE_BUSY_TIMEOUT_MS
    finally:
        await engine.dispose()


def test_urls_get_koppels_drivers() -> None:
    assert sync_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert async_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert async_url("sqlite:////tmp/k.db") == "sqlite+aiosqlite:////tmp/k.db"
    assert sync_url("sqlite+aiosqlite:////tmp/k.db") == "sqlite:////tmp/k.db"
