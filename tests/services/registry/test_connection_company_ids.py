"""`connections.company_ids` (migration 0028) equals the connection's
`connection_companies` rows after every act that writes them: a first consent, a
consent that adds a company, narrowing to the user's reach, a revocation, and plain
SQL on the rows (insert, update, delete, the connection deleted) and on the column
itself; on PostgreSQL also
two transactions adding a company to one connection at once. (The database fixtures
check the same at the end of every test: tests/fixtures/company_copy.py.)"""

from __future__ import annotations

import threading
import uuid

import httpx
import pytest
from sqlalchemy import Engine, delete, insert, update
from sqlmodel import select

from services.auth.consent import repository, service
from services.auth.oauth2.context import AuthContext
from shared.attestation import active_attestation_key
from shared.config import Settings
from shared.db.base import table_of
from shared.models import Connection, ConnectionCompany, TokenFamily
from shared.vault import KeyRing, SecretBox
from tests.fixtures.company_copy import company_copy_drift
from tests.fixtures.factories import make_app
from tests.services.registry.conftest import World, bearer
from tests.services.registry.test_directory import provisioner

LINKS = table_of(ConnectionCompany)


def _column_and_rows(world: World, connection_id: uuid.UUID) -> tuple[list, list]:
    with world.sessions() as session:
        column = session.get(Connection, connection_id).company_ids
        rows = session.exec(select(ConnectionCompany.company_id).where(
            ConnectionCompany.connection_id == connection_id)).all()
        assert company_copy_drift(session.connection()) == {}
    return column, sorted(rows)


def _consent(world: World, keyring: KeyRing, settings: Settings, app_id: uuid.UUID,
             companies: list[uuid.UUID]) -> uuid.UUID:
    """World A's master client consents to the app for its first debtor (committed)."""
    user, debtor = world.a.users["master_client"], world.a.debtors[0]
    with world.sessions() as session:
        ctx = AuthContext(session=session, settings=settings, keyring=keyring, signer=None,
                          redis=None)
        service.grant(ctx, session.merge(user), app_id, debtor.id, companies,
                      ["employee.info.read"])
        session.commit()
        connection = repository.live_connection(session, user.id, app_id, debtor.id)
        assert connection is not None
        return connection.id


async def test_the_column_follows_every_act(client: httpx.AsyncClient, world: World,
                                            keyring: KeyRing, settings: Settings) -> None:
    a = world.a
    c1, c2 = sorted(c.id for c in a.companies if c.debtor_id == a.debtors[0].id)
    with world.sessions() as session:
        active_attestation_key(session, SecretBox(keyring))
        app = make_app(session, scopes=["employee.info.read", "offline_access"])
        session.commit()

    connection_id = _consent(world, keyring, settings, app.id, [c2])  # a first consent
    assert _column_and_rows(world, connection_id) == ([c2], [c2])
    _consent(world, keyring, settings, app.id, [c1, c2])  # adds a company
    assert _column_and_rows(world, connection_id) == ([c1, c2], [c1, c2])

    # Narrowed to the user's reach: the master client becomes an HR manager of c2 only.
    moved = await client.patch(f"/v1/directory/users/{a.users['master_client'].id}",
                               headers=provisioner(world),
                               json={"template": "hr_manager", "company_ids": [str(c2)]})
    assert moved.status_code == 200, moved.text
    assert moved.json()["connections"]["narrowed"] >= 1
    assert _column_and_rows(world, connection_id) == ([c2], [c2])

    revoked = await client.delete(f"/v1/me/connections/{connection_id}",
                                  headers=bearer(world.user_token(a.users["master_client"])))
    assert revoked.status_code == 204, revoked.text
    assert _column_and_rows(world, connection_id) == ([c2], [c2])

    # Plain SQL on the rows, whoever writes them.
    with world.sessions() as session:
        session.exec(insert(LINKS).values(connection_id=connection_id, company_id=c1))
        session.commit()
    assert _column_and_rows(world, connection_id) == ([c1, c2], [c1, c2])
    other = next(c.id for c in a.companies if c.id not in (c1, c2))
    with world.sessions() as session:
        session.exec(update(LINKS).where(LINKS.c.connection_id == connection_id,
                                         LINKS.c.company_id == c2).values(company_id=other))
        session.commit()
    assert _column_and_rows(world, connection_id) == (sorted([c1, other]),) * 2
    # The column itself written (a stale value flushed, a hand-written statement): the
    # database puts the rows' value in its place.
    with world.sessions() as session:
        session.exec(update(table_of(Connection)).where(
            table_of(Connection).c.id == connection_id).values(company_ids=[c2]))
        session.commit()
    assert _column_and_rows(world, connection_id) == (sorted([c1, other]),) * 2
    with world.sessions() as session:
        session.exec(delete(LINKS).where(LINKS.c.connection_id == connection_id))
        session.commit()
    assert _column_and_rows(world, connection_id) == ([], [])


def test_the_column_follows_a_move_between_connections(world: World) -> None:
    """An update that moves a row to another connection rewrites both (and the
    connection deleted takes its rows, and its column, with it)."""
    first, third = world.a.connections[0], world.a.connections[2]
    moving = world.a.companies[1].id  # the first covers companies 0 and 1, the third 0
    with world.sessions() as session:
        session.exec(update(LINKS).where(LINKS.c.connection_id == first.id,
                                         LINKS.c.company_id == moving)
                     .values(connection_id=third.id))
        session.commit()
    assert _column_and_rows(world, first.id) == ([world.a.companies[0].id],) * 2
    assert _column_and_rows(world, third.id) == (sorted(
        [world.a.companies[0].id, moving]),) * 2
    with world.sessions() as session:
        session.exec(delete(table_of(TokenFamily)).where(
            table_of(TokenFamily).c.connection_id == third.id))
        session.exec(delete(table_of(Connection)).where(table_of(Connection).c.id == third.id))
        session.commit()
        assert company_copy_drift(session.connection()) == {}


@pytest.mark.postgres_only
def test_two_transactions_adding_companies_at_once(world: World, engine: Engine) -> None:
    """The second writer's trigger waits for the first to commit, then reads its row:
    the column holds both companies, not only the second's."""
    a = world.a
    connection = a.connections[0]
    free = [c.id for c in a.companies if c.debtor_id == connection.debtor_id]
    with engine.begin() as db:
        db.execute(delete(LINKS).where(LINKS.c.connection_id == connection.id))
    first = engine.connect()
    first.begin()
    first.execute(insert(LINKS).values(connection_id=connection.id, company_id=free[0]))
    errors: list[BaseException] = []

    def second() -> None:
        try:
            with engine.begin() as db:  # its trigger waits for `first`
                db.execute(insert(LINKS).values(connection_id=connection.id,
                                                company_id=free[1]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(1.0)
    assert thread.is_alive()  # waiting for the first's lock
    first.commit()
    first.close()
    thread.join(20)
    assert not errors, errors
    assert _column_and_rows(world, connection.id) == (sorted(free[:2]),) * 2
