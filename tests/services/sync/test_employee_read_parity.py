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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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
from services.sync.resources.schemas import ChangeOut, EmployeeUpdate
from shared.config import Settings
from shared.db.types import utcnow
from shared.errors import KoppelError
from shared.models import Company, Connection, ConnectionStatus, Employee, Event
from shared.models import UserTemplate as T
from shared.outbox import event_values
from shared.pagination import id_cursor
from shared.policy import RULES, authorize, resolve
from shared.runtime import Runtime, open_runtime
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


@dataclass
class Paths:
    """What both paths run on: the runtime, a read pool on PostgreSQL, a request of the
    sync app (the feed's scope-use note reaches the app through it)."""

    runtime: Runtime
    pool: ReadPool | None
    request: Request


# (paths, n-th principal, the principal, the case) -> the general and the fast call.
Calls = Callable[[Paths, int, Principal, Any], tuple[Awaitable[Any], Awaitable[Any]]]


async def _both_paths(app_settings: Settings, principals: list[Principal], cases: list,
                      calls: Calls, pool: bool = True) -> tuple[list[str], set[str]]:
    """Each principal and case along the policy's general path first, then the fast path:
    the differences of their outcomes, and the general path's outcomes seen."""
    differences, outcomes = [], set()
    app = create_app(app_settings)
    read_pool = ReadPool(app_settings.resolved_database_url, size=2, connect_timeout=5) \
        if pool else None
    async with open_runtime(app_settings) as runtime:
        app.state.runtime = runtime
        paths = Paths(runtime, read_pool, Request({"type": "http", "app": app, "headers": []}))
        try:
            for n, principal in enumerate(principals):
                for case in cases:
                    general, fast = calls(paths, n, principal, case)
                    slow = await _outcome(general)
                    quick = await _outcome(fast)
                    outcomes.add(slow[0])
                    if quick != slow:
                        differences.append(f"{principal.connection_id} x {case}: "
                                           f"fast {quick} != policy {slow}")
        finally:
            if read_pool is not None:
                await read_pool.close()
    return differences, outcomes


def _assert_same(found: tuple[list[str], set[str]], drawn: list[dict[str, Any]],
                 explicit_outcomes: set[str]) -> None:
    differences, outcomes = found
    assert not differences, "\n".join(differences)
    if drawn == EXPLICIT:  # it allows some calls and refuses others for each reason
        assert explicit_outcomes <= outcomes


async def _general(paths: Paths, principal: Principal, operation: str, work: Any) -> Any:
    """`work(session, caller)` after the policy's general path: resolve and authorize."""
    async with paths.runtime.async_session() as session:
        caller = authorize(await resolve(session, principal), RULES[operation])
        return await work(session, caller)


def _read(paths: Paths, n: int, principal: Principal, employee_id: Any
          ) -> tuple[Awaitable[Any], Awaitable[Any]]:
    async def work(session, caller):  # type: ignore[no-untyped-def]
        return employee_body(await service.employee(session, caller, employee_id))

    return (_general(paths, principal, "employees.read", work),
            connection_employee(paths.runtime, None, principal, employee_id))


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
    _assert_same(asyncio.run(_both_paths(settings, principals, employees, _read, pool=False)),
                 drawn, {"ok", "InsufficientScope", "InvalidToken", "NotFound"})


def _write(paths: Paths, n: int, principal: Principal, employee_id: Any
           ) -> tuple[Awaitable[Any], Awaitable[Any]]:
    """The general path's write is rolled back; the fast write (run second) commits."""
    changes = {"last_name": f"Parity {n}"}

    async def work(session, caller):  # type: ignore[no-untyped-def]
        row, _ = await service.update_employee(session, caller, employee_id,
                                               EmployeeUpdate(**changes))
        body = employee_body(row)
        await session.rollback()
        return body

    assert paths.pool is not None
    return (_general(paths, principal, "employees.update", work),
            update_connection_employee(paths.runtime, paths.pool, principal, employee_id,
                                       changes, None))


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
    _assert_same(asyncio.run(_both_paths(settings, principals, employees, _write)),
                 drawn, {"ok", "InsufficientScope", "InvalidToken", "NotFound"})


def _list(paths: Paths, n: int, principal: Principal, case: tuple[Any, int]
          ) -> tuple[Awaitable[Any], Awaitable[Any]]:
    """Both paths' first page and, when there is more, the page after it (the fast path
    by the cursor it hands out)."""
    company_id, limit = case

    async def work(session, caller):  # type: ignore[no-untyped-def]
        pages, after = [], None
        for _ in range(2):
            rows = await service.employees(session, caller, company_id, after, limit + 1)
            after = rows[limit - 1].id if len(rows) > limit else None
            pages.append(([employee_body(r) for r in rows[:limit]], after))
            if after is None:
                break
        return pages

    async def fast() -> list:
        assert paths.pool is not None
        pages, cursor = [], None
        for _ in range(2):
            page, after = await connection_employees(paths.runtime, paths.pool, principal,
                                                     company_id, cursor, limit)
            pages.append((page, after))
            if after is None:
                break
            cursor = id_cursor(paths.runtime.keyring.digest_key, f"employees:{company_id}",
                               after)
        return pages

    return _general(paths, principal, "employees.list", work), fast()


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
    repository answer, page boundaries included (pages of one and of fifty)."""
    with committing_sessions() as session:
        employees, principals = _world(session, drawn)
        companies = [session.get(Employee, e).company_id for e in employees]
        for company_id in companies[:2]:  # a second employee: pages of one go on
            f.make_employee(session, session.get(Company, company_id))
        session.commit()
    cases = [(company_id, limit) for company_id in companies for limit in (1, 50)]
    _assert_same(asyncio.run(_both_paths(settings, principals, cases, _list)),
                 drawn, {"ok", "InsufficientScope", "InvalidToken", "NotFound"})


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


def _feed(paths: Paths, n: int, principal: Principal, limit: int
          ) -> tuple[Awaitable[Any], Awaitable[Any]]:
    async def work(session, caller):  # type: ignore[no-untyped-def]
        return [ChangeOut(id=e.id, type=e.type, timestamp=e.created_at,
                          data=e.data).model_dump(mode="json")
                for e in await changes(session, caller, None, limit)]

    async def fast() -> list:
        assert paths.pool is not None
        rows = await connection_changes(paths.request, paths.pool, principal, None, limit,
                                        "changes", visible_types, SETTLE_S)
        return [row.model_dump(mode="json") for row in rows]

    return _general(paths, principal, "changes.list", work), fast()


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
    exactly the events the rule `changes.list` and the feed's query show, in pages of
    three and of 100."""
    with committing_sessions() as session:
        employees, principals = _world(session, drawn)
        _events(session, [session.get(Employee, e).company_id for e in employees])
        session.commit()
    _assert_same(asyncio.run(_both_paths(settings, principals, [3, 100], _feed)),
                 drawn, {"ok", "InsufficientScope", "InvalidToken"})
