"""`GET /v1/companies/{id}/employees` for a connection's token on PostgreSQL, in one
statement on the read pool's asyncpg connections (issue 18, item 1): the policy's reach
compiled into the one SQL statement the list makes.

The statement reads the connection (live, of this app, environment and debtor) with its
consented scopes, the company if the connection covers it (same environment and debtor,
one of the consent's companies) and, beside it, one page of that company's employees in
id order. It is refused as the rule `employees.list` refuses (401, 403), then as the
general path refuses (400 for a cursor not made for this list, 404 for a company outside
reach). Nothing is cached: a revoked or narrowed connection shows in the very next list.
Other callers and SQLite take the general path (service.employees).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Integer, and_, bindparam, select, true

from services.sync.read_pool import ReadPool, fetch_rows
from services.sync.resources.access import access
from services.sync.resources.employee_read import (
    CONNECTION_COLUMNS,
    FIELDS,
    authorize_connection,
    connection_scope,
    employee_body,
)
from shared.data_access import note_accesses
from shared.db.base import table_of
from shared.db.types import utcnow
from shared.errors import NotFound
from shared.last_used import UsageRecorder
from shared.models import App, Company
from shared.pagination import start_after
from shared.policy import RULES, coverage
from shared.runtime import Runtime
from shared.tokens import Principal

RULE = RULES["employees.list"]
SCOPE = connection_scope(RULE)

_conn = coverage.CONNECTIONS
_app = table_of(App)
_company = table_of(Company)
_emp = coverage.EMPLOYEES
_cover = coverage.COVERED

_page = (
    select(*(_emp.c[name] for name in FIELDS))
    .where(_emp.c.company_id == _cover.c.company_id, *coverage.same_owner(_conn, _emp),
           _emp.c.id > bindparam("after"))
    .order_by(_emp.c.id)
    .limit(bindparam("limit", type_=Integer))
    .lateral("page")
)

CONNECTION_EMPLOYEES = (
    select(*CONNECTION_COLUMNS, *(_page.c[name] for name in FIELDS))
    .select_from(
        _conn.join(_app, _app.c.id == _conn.c.app_id)
        # Reach: the company lies in the connection's environment and debtor, and is one
        # of its consent's companies (shared/policy/coverage.py).
        .outerjoin(_company, and_(_company.c.id == bindparam("company_id"),
                                  *coverage.same_owner(_conn, _company)))
        .outerjoin(_cover, and_(coverage.consented_company(_conn, _cover),
                                _cover.c.company_id == _company.c.id))
        .outerjoin(_page, true())
    )
    .where(_conn.c.id == bindparam("connection_id"), _app.c.client_id == bindparam("client_id"),
           coverage.unexpired(bindparam("now"), _conn))
    .order_by(_page.c.id)
)


async def connection_employees(runtime: Runtime, pool: ReadPool, principal: Principal,
                               company_id: uuid.UUID, cursor: str | None, limit: int,
                               recorder: UsageRecorder | None = None,
                               log_access: bool = False
                               ) -> tuple[list[dict[str, Any]], uuid.UUID | None]:
    """A page of up to `limit` employees of the company after the cursor's, as a
    connection's token may list them (their documents, in id order), and the id to
    continue after when there are more; the page is logged (`log_access`)."""
    after, refused = start_after(runtime.keyring.digest_key, f"employees:{company_id}",
                                 cursor)
    rows = await fetch_rows(pool.fetch, CONNECTION_EMPLOYEES, {
        "connection_id": principal.connection_id, "client_id": principal.client_id,
        "company_id": company_id, "after": after, "limit": limit + 1,
        "now": utcnow()})
    first = rows[0] if rows else None
    await authorize_connection(first, principal, SCOPE, recorder)
    if refused is not None:
        raise refused
    if first is None or first.covered is None:
        raise NotFound("no such company")
    employees = [row for row in rows if row.id is not None]
    shown = employees[:limit]
    if log_access and shown and principal.connection_id is not None:
        await note_accesses(runtime.redis, [access(
            first.environment_id, principal.client_id, principal.connection_id, SCOPE,
            tuple(row.id for row in shown))])
    more = shown[-1].id if len(employees) > limit else None
    return [employee_body(row) for row in shown], more
