"""Migration 0028: existing connections get their company ids (sorted; none for a
connection without rows), the triggers keep them from then on, and the downgrade drops
column and triggers (the rows are written again without either)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlmodel import Session

from shared.db.base import table_of
from shared.db.engine import create_sync_engine
from shared.models import Connection, ConnectionCompany
from tests.fixtures import factories as f
from tests.fixtures.company_copy import company_copy_drift
from tests.fixtures.database import alembic_config, fresh_database, migrate

CONNECTIONS, LINKS = table_of(Connection), table_of(ConnectionCompany)
# The connections table as 0027 has it (the model's would write `company_ids`).
BEFORE = sa.Table("connections", sa.MetaData(), *[
    c.copy() for c in CONNECTIONS.columns if c.name != "company_ids"])


@pytest.fixture
def at_0027(tmp_path: Path) -> Iterator[tuple[str, sa.Engine]]:
    with fresh_database(tmp_path) as url:
        migrate(url, "0027")
        engine = create_sync_engine(url)
        try:
            yield url, engine
        finally:
            engine.dispose()


def _connections_before_0028(engine: sa.Engine, covering: list[int]) -> tuple[list, list]:
    """Connections (as 0027 has them, without the column) covering that many of three
    companies each, the companies inserted out of id order; and the companies."""
    with Session(engine) as session:
        env = f.make_environment(session)
        debtor = f.make_debtor(session, env)
        companies = [f.make_company(session, debtor) for _ in range(3)]
        user = f.make_user(session, env, template="master_client", debtor=debtor)
        app = f.make_app(session)
        session.commit()
        company_ids = [c.id for c in companies]
        connection_ids = []
        db = session.connection()
        for n in covering:
            ident = uuid.uuid4()
            db.execute(sa.insert(BEFORE).values(
                id=ident, environment_id=env.id, user_id=user.id, app_id=app.id,
                debtor_id=debtor.id, scopes=[], status="revoked" if n != covering[-1]
                else "active", scope_used_at={},
                created_at=sa.func.current_timestamp(), updated_at=sa.func.current_timestamp()))
            for company_id in reversed(company_ids[:n]):
                db.execute(sa.insert(LINKS).values(connection_id=ident, company_id=company_id))
            connection_ids.append(ident)
        session.commit()
    return connection_ids, company_ids


def _column(engine: sa.Engine) -> dict[uuid.UUID, list[uuid.UUID]]:
    with engine.connect() as db:
        return dict(db.execute(sa.select(CONNECTIONS.c.id, CONNECTIONS.c.company_ids)).all())


def test_backfill_triggers_and_downgrade(at_0027: tuple[str, sa.Engine]) -> None:
    url, engine = at_0027
    connections, companies = _connections_before_0028(engine, [0, 1, 3])
    command.upgrade(alembic_config(url), "0028")
    assert _column(engine) == {connections[0]: [], connections[1]: companies[:1],
                               connections[2]: sorted(companies)}
    with engine.begin() as db:
        db.execute(sa.delete(LINKS).where(LINKS.c.company_id == companies[0]))
        assert company_copy_drift(db) == {}
    assert _column(engine)[connections[2]] == sorted(companies[1:])

    command.downgrade(alembic_config(url), "0027")
    with engine.begin() as db:
        assert "company_ids" not in {c["name"] for c in sa.inspect(db).get_columns(
            "connections")}
        db.execute(sa.insert(LINKS).values(connection_id=connections[0],
                                           company_id=companies[0]))
    command.upgrade(alembic_config(url), "head")
    assert _column(engine)[connections[0]] == companies[:1]
