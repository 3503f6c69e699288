"""The fast read of one employee for a connection (resources/employee_read.py: one hand-built
SELECT) and the fast write (resources/employee_write.py) answer exactly like the declared
policy's general path (resolve, authorize, then the repository's reach conditions), on
generated connections, consents and employees.

Hypothesis draws the consents (app, debtor, covered companies, scopes, status) and the
tokens (their client and scopes); every connection is then asked for every employee,
including one of another environment, along both paths.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, select
from starlette.requests import Request

from services.sync.app import create_app
from services.sync.events.connection_feed import connection_changes
from services.sync.events.feed import SETTLE_S, changes, visible_types
from services.sync.read_pool import ReadPool
from services.sync.resources import service
from services.sync.resources.employee_list import connection_employees
from services.sync.resources.employee_read import connection_employee, employee_body
from services.sync.resources.employee_write import update_connection_employee
from services.sync.resources.schemas import EmployeeUpdate
from shared.config import Settings
from shared.db.types import utcnow
from shared.errors import KoppelError
from shared.models import Company, Connection, ConnectionStatus, Employee, Event
from shared.models import UserTemplate as T
from shared.outbox import event_values
from shared.policy import RULES, authorize, resolve
from shared.runtime import open_runtime
from shared.tokens import Principal
from tests.fixtures import factories as f

SCOPES = ["employee.info.read", "employee.info", "company.info.read", "employee.payment.read"]

consents = st.lists(st.fixed_dictionaries({
    "app": st.sampled_from([0, 1]),
    "debtor": st.sampled_from([0, 1]),
    "companies": st.sets(st.sampled_from([0, 1])),
    "scopes": st.sets(st.sampled_from(SCOPES)),
    "status": st.sampled_from(list(ConnectionStatus)),
    "token_app": st.sampled_from([0, 0, 1]),  # mostly the connection's own app
    "token_scopes": st.sets(st.sampled_from(SCOPES)),
}), min_size=1, max_size=4)


# Drawn rarely at random, so always tried: a consent that allows the write, one that
# allows only the read, a token without the write scope, a suspended connection, one
# without any employee scope, a token and a consent that share no scope.
EXPLICIT = [
    {"app": 0, "debtor": 0, "companies": {0}, "scopes": {"employee.info"},
     "status": ConnectionStatus.ACTIVE, "token_app": 0, "token_scopes": {"employee.info"}},
    {"app": 1, "debtor": 0, "companies": {0, 1}, "scopes": {"employee.info.read"},
     "status": ConnectionStatus.ACTIVE, "token_app": 1,
     "token_scopes": {"employee.info.read", "employee.info"}},
    {"app": 0, "debtor": 1, "companies": {1}, "scopes": {"employee.info"},
     "status": ConnectionStatus.ACTIVE, "token_app": 0, "token_scopes": {"employee.info.read"}},
    {"app": 1, "debtor": 1, "companies": {0}, "scopes": {"employee.info", "company.info.read"},
     "status": ConnectionStatus.SUSPENDED, "token_app": 1, "token_scopes": {"employee.info"}},
    {"app": 0, "debtor": 0, "companies": {1}, "scopes": {"company.info.read"},
     "status": ConnectionStatus.ACTIVE, "token_app": 0,
     "token_scopes": {"company.info.read", "employee.info.read"}},
    {"app": 1, "debtor": 0, "companies": {0, 1}, "scopes": {"employee.payment.read"},
     "status": ConnectionStatus.ACTIVE, "token_app": 1, "token_scopes": {"employee.info"}},
]


def _world(session: Session, drawn: list[dict[str, Any]]) -> tuple[list, list[Principal]]:
    """The employees' ids (one per company, the last of another environment) and a
    principal per drawn consent."""
    env, other = f.make_environment(session), f.make_environment(session)
    debtors = [f.make_debtor(session, env) for _ in range(2)]
    companies = [[f.make_company(session, d) for _ in range(2)] for d in debtors]
    employees = [f.make_employee(session, c) for row in companies for c in row]
    employees.append(f.make_employee(session, f.make_company(session,
                                                             f.make_debtor(session, other))))
    apps = [f.make_app(session, scopes=SCOPES) for _ in range(2)]
    principals = []
    for spec in drawn:
        # One user each: a user has one live connection per app and debtor.
        user = f.make_user(session, env, template=T.MASTER_CLIENT, debtor=debtors[0])
        connection = f.make_connection(
            session, user, apps[spec["app"]], debtor=debtors[spec["debtor"]],
            companies=[companies[spec["debtor"]][i] for i in sorted(spec["companies"])],
            scopes=sorted(spec["scopes"]), status=spec["status"])
        principals.append(Principal(
            kind="connection", user_id=user.id, client_id=apps[spec["token_app"]].client_id,
            scopes=frozenset(spec["token_scopes"]), environment_id=env.id,
            connection_id=connection.id, debtor_id=debtors[spec["debtor"]].id,
            family_id=uuid.uuid4(), jti="x", claims={}))
    session.commit()
    return [e.id for e in employees], principals


async def _outcome(call) -> tuple[str, Any]:
    try:
        return "ok", await call
    except KoppelError as exc:
        return type(exc).__name__, exc.status


async def _compare(app_settings: Settings, employees: list, principals: list[Principal]
                   ) -> list[str]:
    rule = RULES["employees.read"]
    differences = []
    async with open_runtime(app_settings) as runtime:
        for principal in principals:
            for employee_id in employees:
                fast = await _outcome(connection_employee(runtime, None, principal, employee_id))

                async def general(principal=principal, employee_id=employee_id):
                    async with runtime.async_session() as session:
                        caller = authorize(await resolve(session, principal), rule)
                        return employee_body(await service.employee(session, caller,
                                                                    employee_id))

                slow = await _outcome(general())
                if fast != slow:
                    differences.append(f"{principal.connection_id} x {employee_id}: "
                                       f"fast {fast} != policy {slow}")
    return differences


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=consents)
@example(drawn=EXPLICIT)
def test_the_fast_read_answers_like_the_policy(
    drawn: list[dict[str, Any]], committing_sessions: sessionmaker[Session],
    settings: Settings,
) -> None:
    with committing_sessions() as session:
        employees, principals = _world(session, drawn)
    differences = asyncio.run(_compare(settings, employees, principals))
    assert not differences, "\n".join(differences)


async def _compare_writes(app_settings: Settings, employees: list,
                          principals: list[Principal]) -> tuple[list[str], set[str]]:
    """Each principal writes each employee along both paths: the policy's general path
    (rolled back) first, then the fast write (committed); the differences, and the
    outcomes seen."""
    rule = RULES["employees.update"]
    differences, outcomes = [], set()
    pool = ReadPool(app_settings.resolved_database_url, size=2, connect_timeout=5)
    async with open_runtime(app_settings) as runtime:
        try:
            for n, principal in enumerate(principals):
                for employee_id in employees:
                    changes = {"last_name": f"Parity {n}"}

                    async def general(principal=principal, employee_id=employee_id,
                                      changes=changes):
                        async with runtime.async_session() as session:
                            caller = authorize(await resolve(session, principal), rule)
                            row, _ = await service.update_employee(
                                session, caller, employee_id, EmployeeUpdate(**changes))
                            body = employee_body(row)
                            await session.rollback()
                            return body

                    slow = await _outcome(general())
                    fast = await _outcome(update_connection_employee(
                        runtime, pool, principal, employee_id, changes, None))
                    outcomes.add(slow[0])
                    if fast != slow:
                        differences.append(f"{principal.connection_id} x {employee_id}: "
                                           f"fast write {fast} != policy {slow}")
        finally:
            await pool.close()
    return differences, outcomes


@pytest.mark.postgres_only
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=consents)
@example(drawn=EXPLICIT)
def test_the_fast_write_answers_like_the_policy(
    drawn: list[dict[str, Any]], committing_sessions: sessionmaker[Session],
    settings: Settings,
) -> None:
    """The connection's PATCH on PostgreSQL (resources/employee_write.py) refuses and
    allows exactly what the declared rule `employees.update` does, with the same answer."""
    with committing_sessions() as session:
        employees, principals = _world(session, drawn)
    differences, outcomes = asyncio.run(_compare_writes(settings, employees, principals))
    assert not differences, "\n".join(differences)
    if drawn == EXPLICIT:  # it allows some writes and refuses others for each reason
        assert {"ok", "InsufficientScope", "InvalidToken", "NotFound"} <= outcomes


async def _compare_lists(app_settings: Settings, companies: list,
                         principals: list[Principal]) -> tuple[list[str], set[str]]:
    """Each principal lists each company's employees along both paths, a page of one
    and a page of fifty."""
    rule = RULES["employees.list"]
    differences, outcomes = [], set()
    pool = ReadPool(app_settings.resolved_database_url, size=2, connect_timeout=5)
    async with open_runtime(app_settings) as runtime:
        try:
            for principal in principals:
                for company_id in companies:
                    for limit in (1, 50):
                        async def general(principal=principal, company_id=company_id,
                                          limit=limit):
                            async with runtime.async_session() as session:
                                caller = authorize(await resolve(session, principal), rule)
                                rows = await service.employees(session, caller, company_id,
                                                               None, limit + 1)
                            more = rows[limit - 1].id if len(rows) > limit else None
                            return [employee_body(r) for r in rows[:limit]], more

                        slow = await _outcome(general())
                        fast = await _outcome(connection_employees(
                            runtime, pool, principal, company_id, None, limit))
                        outcomes.add(slow[0])
                        if fast != slow:
                            differences.append(f"{principal.connection_id} x {company_id} "
                                               f"({limit}): fast list {fast} != policy {slow}")
        finally:
            await pool.close()
    return differences, outcomes


@pytest.mark.postgres_only
@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=consents)
@example(drawn=EXPLICIT)
def test_the_fast_list_answers_like_the_policy(
    drawn: list[dict[str, Any]], committing_sessions: sessionmaker[Session],
    settings: Settings,
) -> None:
    """The connection's list of a company's employees on PostgreSQL
    (resources/employee_list.py) answers exactly what the rule `employees.list` and the
    repository answer, page boundaries included."""
    with committing_sessions() as session:
        employees, principals = _world(session, drawn)
        companies = [session.get(Employee, e).company_id for e in employees]
        for company_id in companies[:2]:  # a second employee: pages of one go on
            f.make_employee(session, session.get(Company, company_id))
        session.commit()
    differences, outcomes = asyncio.run(_compare_lists(settings, companies, principals))
    assert not differences, "\n".join(differences)
    if drawn == EXPLICIT:
        assert {"ok", "InsufficientScope", "InvalidToken", "NotFound"} <= outcomes


def _events(session: Session, companies: list[uuid.UUID]) -> None:
    """Settled events of every kind the feed filters: data events of each company (and
    of its debtor alone), and each connection's own `connection.updated`."""
    settled = {"created_at": utcnow() - timedelta(minutes=1)}
    for company_id in companies:
        company = session.get(Company, company_id)
        for event_type, company_part in (("employee.updated", company.id),
                                         ("employee.payment.changed", company.id),
                                         ("company.updated", None)):
            data = ({"employee_id": str(uuid.uuid4()), "changed_fields": ["last_name"]}
                    if event_type.startswith("employee.") else {"changed_fields": ["name"]})
            if event_type == "employee.payment.changed":
                data = {"employee_id": str(uuid.uuid4()), "wage_component_id":
                        str(uuid.uuid4()), "action": "added", "changed_fields": ["amount"]}
            session.add(Event(**{**event_values(
                event_type, company.environment_id, debtor_id=company.debtor_id,
                company_id=company_part, **data), **settled}))
    for connection in session.exec(select(Connection)).all():
        session.add(Event(**{**event_values(
            "connection.updated", connection.environment_id, debtor_id=connection.debtor_id,
            connection_id=connection.id, app_id=connection.app_id,
            changed_fields=["scopes"]), **settled}))


async def _compare_feeds(app_settings: Settings, principals: list[Principal]
                         ) -> tuple[list[str], set[str]]:
    """Each principal reads the feed along both paths, in pages of three and of 100."""
    rule = RULES["changes.list"]
    differences, outcomes = [], set()
    pool = ReadPool(app_settings.resolved_database_url, size=2, connect_timeout=5)
    app = create_app(app_settings)
    async with open_runtime(app_settings) as runtime:
        app.state.runtime = runtime
        request = Request({"type": "http", "app": app, "headers": []})
        try:
            for principal in principals:
                for limit in (3, 100):
                    async def general(principal=principal, limit=limit):
                        async with runtime.async_session() as session:
                            caller = authorize(await resolve(session, principal), rule)
                            return [e.id for e in await changes(session, caller, None, limit)]

                    async def fast(principal=principal, limit=limit):
                        rows = await connection_changes(request, pool, principal, None, limit,
                                                        "changes", visible_types, SETTLE_S)
                        return [row.id for row in rows]

                    slow = await _outcome(general())
                    quick = await _outcome(fast())
                    outcomes.add(slow[0])
                    if quick != slow:
                        differences.append(f"{principal.connection_id} ({limit}): fast feed "
                                           f"{quick} != policy {slow}")
        finally:
            await pool.close()
    return differences, outcomes


@pytest.mark.postgres_only
@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=consents)
@example(drawn=EXPLICIT)
def test_the_fast_feed_answers_like_the_policy(
    drawn: list[dict[str, Any]], committing_sessions: sessionmaker[Session],
    settings: Settings,
) -> None:
    """The connection's change feed on PostgreSQL (events/connection_feed.py) shows
    exactly the events the rule `changes.list` and the feed's query show."""
    with committing_sessions() as session:
        employees, principals = _world(session, drawn)
        _events(session, [session.get(Employee, e).company_id for e in employees])
        session.commit()
    differences, outcomes = asyncio.run(_compare_feeds(settings, principals))
    assert not differences, "\n".join(differences)
    if drawn == EXPLICIT:
        assert {"ok", "InsufficientScope", "InvalidToken"} <= outcomes
