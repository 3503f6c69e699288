"""`GET /v1/employees/{id}`, the busiest read of the data API, in one database round trip
for a connection's token.

One SELECT answers everything the general path (the policy, then the repository) asks in
four: the connection (live: active and not past its `expires_at`; of this app,
environment and debtor), its granted scopes,
and the employee if it lies within the connection's reach (same environment and debtor,
a covered company). Nothing is cached: a revoked or narrowed connection shows in the
very next read. On PostgreSQL the statement, compiled once, runs on asyncpg directly
(services/sync/read_pool.py) and outside a transaction (a single SELECT sees one
snapshot anyway), saving BEGIN and COMMIT and SQLAlchemy's per-call work.

Other callers (a first-party user's token) take the general path. Either notes the read
in the data-access log (shared/data_access.py: one Redis call, no database write).
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from sqlalchemy import and_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.sync.read_pool import ReadPool, fetch_fields
from services.sync.resources import schemas, service
from services.sync.resources.access import access, access_of
from shared.data_access import note_accesses
from shared.db.base import table_of
from shared.db.types import utcnow
from shared.errors import InsufficientScope, NotFound
from shared.last_used import UsageRecorder
from shared.models import App, ConnectionStatus
from shared.policy import RULES, CallerKind, Rule, authorize, coverage, resolve
from shared.runtime import Runtime
from shared.scopes import granting_scope, grants, implied
from shared.tokens import InvalidToken, Principal


def connection_scope(rule: Rule) -> str:
    """The one scope `rule` asks of a connection, which a fast path checks in both the
    token and the current consent; ValueError (at import) if the rule takes no
    connection or asks another number of scopes, so a changed rule cannot leave a fast
    path checking less than the policy."""
    if CallerKind.CONNECTION not in rule.callers or len(rule.scopes) != 1:
        raise ValueError(f"{rule.operation}: a fast path needs a connection rule of one scope")
    return rule.scopes[0]


RULE = RULES["employees.read"]
SCOPE = connection_scope(RULE)
# The columns of `EmployeeOut`, read straight into its JSON document (`employee_body`).
FIELDS = tuple(schemas.EmployeeOut.model_fields)

_conn = coverage.CONNECTIONS
_app = table_of(App)
_emp = coverage.EMPLOYEES
_cover = coverage.COVERED
# What `check_connection` reads of the connection and its consent, first in the read's
# and the list's statement.
CONNECTION_COLUMNS = (_conn.c.status, _conn.c.environment_id, _conn.c.debtor_id,
                      _conn.c.scopes, _cover.c.company_id.label("covered"))

CONNECTION_EMPLOYEE = (
    select(*CONNECTION_COLUMNS, *(_emp.c[name] for name in FIELDS))
    .select_from(
        _conn.join(_app, _app.c.id == _conn.c.app_id)
        # Reach: the policy's one definition of a covered employee (shared/policy/
        # coverage.py), which "who can read me" (services/registry/exposure) joins by too.
        .outerjoin(_emp, and_(_emp.c.id == bindparam("employee_id"),
                              *coverage.same_owner(_conn, _emp)))
        .outerjoin(_cover, and_(coverage.consented_company(_conn, _cover),
                                coverage.of_company(_cover, _emp)))
    )
    .where(_conn.c.id == bindparam("connection_id"), _app.c.client_id == bindparam("client_id"),
           # Past its expiry a connection is not live, whether or not the worker's job has
           # turned it `expired` yet: no row, so 401 like any connection not live.
           coverage.unexpired(bindparam("now"), _conn))
)


def employee_body(row: Any) -> dict[str, Any]:
    """The `EmployeeOut` document of a row with the employee's fields, as JSON values."""
    birth_date = row.birth_date
    return {"id": str(row.id), "company_id": str(row.company_id), "number": row.number,
            "first_name": row.first_name, "last_name": row.last_name,
            "birth_date": birth_date.isoformat() if birth_date is not None else None,
            "email": row.email}


async def _core_row(engine: AsyncEngine, params: dict[str, Any]):
    async with engine.connect() as conn:
        return (await conn.execute(CONNECTION_EMPLOYEE, params)).first()


def connection_params(principal: Principal, employee_id: uuid.UUID) -> dict[str, Any]:
    """The parameters of CONNECTION_EMPLOYEE for a connection's call about an employee."""
    return {"connection_id": principal.connection_id, "client_id": principal.client_id,
            "employee_id": employee_id, "now": utcnow()}


def live_scopes(row: Any, principal: Principal) -> frozenset[str]:
    """The consented scopes of a connection's row, read with the token's connection and
    client id; 401 unless the connection is live (active; its expiry is the statement's
    condition) and the token's environment and debtor are its own."""
    if (row is None or row.status != ConnectionStatus.ACTIVE
            or row.environment_id != principal.environment_id
            or row.debtor_id != principal.debtor_id):
        raise InvalidToken("the access token's connection is not active")
    consented = row.scopes
    if isinstance(consented, str):  # asyncpg leaves a JSON column as its text
        consented = orjson.loads(consented)
    return frozenset(consented)


async def authorize_connection(row: Any, principal: Principal, scope: str,
                               recorder: UsageRecorder | None) -> None:
    """Refuse a connection's call by its row (the connection's status, environment,
    debtor and consented scopes, read with the token's connection and client id) as the
    rule would: 401 if the connection is not live (or not the token's), 403 without
    `scope` in both token and consent; the consented scope used is noted on `recorder`."""
    consented = live_scopes(row, principal)
    if not (grants(consented, scope) and principal.has_scope(scope)):
        raise InsufficientScope(scope)
    used = granting_scope(consented & implied(principal.scopes), scope)
    if recorder is not None and used is not None and principal.connection_id is not None:
        await recorder.scope_used(principal.connection_id, used)


async def check_connection(row: Any, principal: Principal, scope: str,
                           recorder: UsageRecorder | None) -> None:
    """`authorize_connection` by a CONNECTION_EMPLOYEE row, then 404 for an employee
    outside the connection's reach."""
    await authorize_connection(row, principal, scope, recorder)
    if row.id is None or row.covered is None:
        raise NotFound("no such employee")


async def connection_employee(runtime: Runtime, pool: ReadPool | None, principal: Principal,
                              employee_id: uuid.UUID, recorder: UsageRecorder | None = None,
                              log_access: bool = False) -> dict[str, Any]:
    """The employee as a connection's token may read it: 401 if the connection is not
    live, 403 without `employee.info.read` in both token and consent, 404 outside reach;
    the read is logged (`log_access`)."""
    params = connection_params(principal, employee_id)
    if pool is not None:
        row: Any = await fetch_fields(pool.fetchrow, CONNECTION_EMPLOYEE, params)
    else:
        row = await _core_row(runtime.async_engine, params)
    await check_connection(row, principal, SCOPE, recorder)
    if log_access and principal.connection_id is not None:
        await note_accesses(runtime.redis, [access(
            row.environment_id, principal.client_id, principal.connection_id, SCOPE,
            (row.id,))])
    return employee_body(row)


async def readable_employee(runtime: Runtime, pool: ReadPool | None, principal: Principal,
                            employee_id: uuid.UUID, recorder: UsageRecorder | None = None,
                            log_access: bool = False) -> dict[str, Any]:
    """The employee's document if the caller may read it (the declared policy); a
    connection's use of its scope is noted on `recorder`; a connection's read runs on
    `pool` (deps.read_pool; None: the runtime's engine); the read is logged in the
    data-access log when `log_access`."""
    if principal.kind == "connection":
        return await connection_employee(runtime, pool, principal, employee_id, recorder,
                                         log_access)
    async with runtime.async_session() as session:
        caller = authorize(await resolve(session, principal), RULE)
        row = await service.employee(session, caller, employee_id)
        body = employee_body(row)
    access = access_of(caller, [row.id]) if log_access else None
    if access is not None:
        await note_accesses(runtime.redis, [access])
    return body

