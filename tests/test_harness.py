"""The harness itself: a per-run database and Redis, and per-test rollback."""

from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.pool import NullPool
from sqlmodel import Session

from shared.config import Settings
from shared.models import Environment
from shared.redis_embedded import resolved_redis_url
from tests.fixtures.backend import RUN_TOKEN, on_postgres
from tests.fixtures.factories import make_environment


def test_the_run_has_its_own_migrated_database(
    engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> None:
    if on_postgres():
        assert engine.url.database.startswith(f"koppel_t_{RUN_TOKEN}_")
    else:
        assert Path(engine.url.database).is_relative_to(tmp_path_factory.getbasetemp())
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        assert conn.execute(select(func.count()).select_from(Environment)).scalar_one() == 0


def test_a_commit_inside_db_session_does_not_escape(db_session: Session, engine: Engine) -> None:
    environment = make_environment(db_session)
    db_session.commit()
    assert db_session.get(Environment, environment.id) is not None
    query = select(func.count()).select_from(Environment).where(Environment.id == environment.id)
    # A plain engine: Koppel's SQLite engine would wait for the test's write lock.
    observer = create_engine(engine.url.render_as_string(hide_password=False), poolclass=NullPool)
    try:
        with observer.connect() as other:
            assert other.execute(query).scalar_one() == 0
    finally:
        observer.dispose()


def test_redis_is_this_workers_own(settings: Settings, redis_client: redis.Redis) -> None:
    assert redis_client.dbsize() == 0
    if settings.redis_url:
        assert redis_client.connection_pool.connection_kwargs["db"] >= 1
    else:
        assert resolved_redis_url(settings) == f"unix://{settings.var_dir / 'redis/redis.sock'}"
    assert redis_client.ping()


@pytest.mark.postgres_only
def test_postgres_only_tests_run_on_postgres_alone(engine: Engine) -> None:
    assert engine.dialect.name == "postgresql"
