"""Who can read me (issue 16, item 3), end to end through HTTP on the real database.

A world is generated from a seed: debtors and companies with employees, partner apps,
connections of master clients with various company reaches and scopes, in every status,
one past its expiry while still marked active, one that expires later, and one whose
consent row names a company of another debtor. For every connection and employee the
registry's exposure must list the pair exactly when the sync data API serves that
employee to that connection's token (200, against 401 or 404).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest

from services.sync.app import create_app as create_sync
from shared.db.types import utcnow
from shared.models import Company, Connection, ConnectionCompany, ConnectionStatus, Employee, User
from shared.models import UserTemplate as T
from shared.scopes import SCOPES
from tests.fixtures import factories as f
from tests.services.conftest import running
from tests.services.registry.conftest import World, bearer

EXTRA_SCOPES = ["employee.payment.read", "employee.absence.read", "employee.bankaccount",
                "company.info.read"]
ACCOUNTANT_SCOPE = "environment.connections.read"


@dataclass
class Generated:
    employees: list[Employee]  # the environment's (A's), then one of B's
    connections: list[Connection]
    companies: dict[Any, set[Any]]  # connection id -> the companies of its consent rows


def _generate(world: World, seed: int) -> Generated:
    """On environment A of the registry's world: three debtors with two or three
    companies of two employees each, and about a dozen connections."""
    rng = random.Random(seed)
    now = utcnow()
    with world.sessions() as session:
        env = world.a.environment
        debtors = [f.make_debtor(session, env) for _ in range(3)]
        companies: list[list[Company]] = [
            [f.make_company(session, d) for _ in range(rng.choice((2, 3)))] for d in debtors]
        employees = [f.make_employee(session, c) for row in companies for c in row
                     for _ in range(2)]
        employees.append(f.make_employee(session, world.b.companies[0]))
        apps = [f.make_app(session, scopes=["employee.info.read", *EXTRA_SCOPES,
                                            "offline_access"]) for _ in range(2)]
        statuses = [ConnectionStatus.ACTIVE] * 6 + [
            ConnectionStatus.REVOKED, ConnectionStatus.EXPIRED, ConnectionStatus.SUSPENDED,
            "past_expiry", "expires_later", "foreign_company"]
        connections, covered = [], {}
        for kind in statuses:
            d = rng.randrange(len(debtors))
            own = companies[d]
            picked = rng.sample(own, rng.randint(1, len(own)))
            if kind == "foreign_company":  # a consent row of another debtor's company
                picked.append(companies[(d + 1) % len(debtors)][0])
            status = kind if kind in set(ConnectionStatus) else ConnectionStatus.ACTIVE
            expires_at = {"past_expiry": now - timedelta(minutes=5),
                          "expires_later": now + timedelta(days=30)}.get(kind)
            user = f.make_user(session, env, template=T.MASTER_CLIENT, debtor=debtors[d])
            scopes = ["employee.info.read",
                      *rng.sample(EXTRA_SCOPES, rng.randint(0, len(EXTRA_SCOPES)))]
            connection = f.make_connection(session, user, rng.choice(apps), debtor=debtors[d],
                                           companies=picked, scopes=scopes, status=status,
                                           expires_at=expires_at)
            connections.append(connection)
            covered[connection.id] = {c.id for c in picked}
        session.commit()
        for row in (*employees, *connections):
            session.refresh(row)
            session.expunge(row)
    return Generated(employees, connections, covered)


async def _exposure(registry: httpx.AsyncClient, token: str, employee: Employee,
                    status: str = "active") -> dict[str, dict[str, Any]]:
    """Every row of the employee's exposure, walked page by page (two rows a page)."""
    rows: dict[str, dict[str, Any]] = {}
    url = f"/v1/environment/employees/{employee.id}/exposure"
    params: dict[str, Any] = {"status": status, "limit": 2}
    while True:
        response = await registry.get(url, params=params, headers=bearer(token))
        assert response.status_code == 200, response.text
        body = response.json()
        rows.update({row["id"]: row for row in body["data"]})
        if body["next_cursor"] is None:
            return rows
        params["cursor"] = body["next_cursor"]


@pytest.mark.parametrize("seed", [16, 1603])
async def test_exposure_lists_a_pair_exactly_when_the_data_api_serves_it(
    world: World, client: httpx.AsyncClient, seed: int
) -> None:
    generated = _generate(world, seed)
    accountant = world.user_token(world.a.users["accountant"], ACCOUNTANT_SCOPE)
    own, foreign = generated.employees[:-1], generated.employees[-1]
    tokens = {c.id: world.connection_token(c) for c in generated.connections}
    served: set[tuple[str, str]] = set()
    async with running(create_sync(world.settings)) as sync:
        for connection in generated.connections:
            for employee in generated.employees:
                response = await sync.get(f"/v1/employees/{employee.id}",
                                          headers=bearer(tokens[connection.id]))
                assert response.status_code in (200, 401, 404), response.text
                if response.status_code == 200:
                    served.add((str(connection.id), str(employee.id)))
    listed = set()
    for employee in own:
        rows = await _exposure(client, accountant, employee)
        listed |= {(connection_id, str(employee.id)) for connection_id in rows}
    assert listed == served
    # Not vacuous: some pairs are served, and each kind of refusal happens.
    by_id = {c.id: c for c in generated.connections}
    live = {c.id for c in generated.connections if c.status == ConnectionStatus.ACTIVE
            and (c.expires_at is None or c.expires_at > utcnow())}
    assert served and {by_id[c].status for c in live} == {ConnectionStatus.ACTIVE}
    assert any((str(c), str(e.id)) not in served for c in live for e in own)  # reach
    assert {c for c, _ in served} == {str(c) for c in live}  # the others: 401
    # What the rows say about each connection.
    for employee in own:
        for connection_id, row in (await _exposure(client, accountant, employee)).items():
            connection = next(c for c in generated.connections if str(c.id) == connection_id)
            assert row["status"] == "active"
            assert row["since"] is not None
            assert (row["expires_at"] is None) == (connection.expires_at is None)
            assert [s["scope"] for s in row["scopes"]] == connection.scopes
            assert all(s["sensitivity"] == SCOPES[s["scope"]].sensitivity.value
                       for s in row["scopes"])
            assert row["user"]["id"] == str(connection.user_id)
            assert row["user"]["template"] == "master_client"
            assert "@" in row["user"]["email"]
    # Another environment's employee is 404 to this accountant.
    response = await client.get(f"/v1/environment/employees/{foreign.id}/exposure",
                                headers=bearer(accountant))
    assert response.status_code == 404, response.text


def _reach(generated: Generated, connection: Connection, employee: Employee) -> bool:
    """Reach alone (status aside), as docs/product.md says it."""
    return (employee.environment_id == connection.environment_id
            and employee.debtor_id == connection.debtor_id
            and employee.company_id in generated.companies[connection.id])


async def test_status_picks_the_other_connections(world: World, client: httpx.AsyncClient
                                                  ) -> None:
    generated = _generate(world, 7)
    accountant = world.user_token(world.a.users["accountant"], ACCOUNTANT_SCOPE)
    now = utcnow()

    def shown(connection: Connection) -> str:
        if connection.status == ConnectionStatus.ACTIVE and connection.expires_at is not None \
                and connection.expires_at <= now:
            return "expired"
        return connection.status

    for employee in generated.employees[:-1]:
        reached = {str(c.id): shown(c) for c in generated.connections
                   if _reach(generated, c, employee)}
        every = await _exposure(client, accountant, employee, "all")
        assert {i: row["status"] for i, row in every.items()} == reached
        for status in ("active", "suspended", "expired", "revoked"):
            rows = await _exposure(client, accountant, employee, status)
            assert set(rows) == {i for i, s in reached.items() if s == status}, status
    response = await client.get(
        f"/v1/environment/employees/{generated.employees[0].id}/exposure?status=gone",
        headers=bearer(accountant))
    assert response.status_code == 422


async def test_an_employee_sees_only_their_own_exposure(world: World,
                                                        client: httpx.AsyncClient) -> None:
    generated = _generate(world, 3)
    first, second = generated.employees[0], generated.employees[-2]
    with world.sessions() as session:
        users = []
        for employee in (first, second):
            user = f.make_user(session, world.a.environment, template=T.EMPLOYEE,
                               employee_id=employee.id)
            session.commit()
            session.refresh(user)
            session.expunge(user)
            users.append(user)
        unlinked = session.get(User, world.a.users["employee"].id)
        assert unlinked is not None and unlinked.employee_id is None
    accountant = world.user_token(world.a.users["accountant"], ACCOUNTANT_SCOPE)
    for user, employee in zip(users, (first, second), strict=True):
        response = await client.get("/v1/me/exposure",
                                    headers=bearer(world.user_token(user, "connections.read")))
        assert response.status_code == 200, response.text
        mine = {row["id"]: row for row in response.json()["data"]}
        assert mine == await _exposure(client, accountant, employee)
    assert await _exposure(client, accountant, first) != await _exposure(client, accountant,
                                                                          second)
    # A login linked to no employee record reads an empty list.
    response = await client.get(
        "/v1/me/exposure",
        headers=bearer(world.user_token(world.a.users["employee"], "connections.read")))
    assert response.status_code == 200 and response.json() == {"data": [],
                                                                "next_cursor": None}
    # Without `connections.read`: 403.
    response = await client.get(
        "/v1/me/exposure", headers=bearer(world.user_token(users[0], "connections.manage")))
    assert response.status_code == 403


async def test_an_accountant_of_another_environment_gets_404(world: World,
                                                             client: httpx.AsyncClient) -> None:
    generated = _generate(world, 5)
    b_accountant = world.user_token(world.b.users["accountant"], ACCOUNTANT_SCOPE)
    for employee in generated.employees[:3]:
        response = await client.get(f"/v1/environment/employees/{employee.id}/exposure",
                                    headers=bearer(b_accountant))
        assert response.status_code == 404, response.text
    # Not a matter of the employee having no connections: B's accountant has them.
    with world.sessions() as session:
        assert session.get(ConnectionCompany, (world.a.connections[0].id,
                                               world.a.companies[0].id)) is not None
        a_employee = f.make_employee(session, world.a.companies[0])
        session.commit()
        a_employee_id = a_employee.id
    a_accountant = world.user_token(world.a.users["accountant"], ACCOUNTANT_SCOPE)
    response = await client.get(f"/v1/environment/employees/{a_employee_id}/exposure",
                                headers=bearer(a_accountant))
    assert response.status_code == 200 and response.json()["data"]
    response = await client.get(f"/v1/environment/employees/{a_employee_id}/exposure",
                                headers=bearer(b_accountant))
    assert response.status_code == 404
