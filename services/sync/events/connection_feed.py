"""`GET /v1/changes` for a connection's token on PostgreSQL: two statements on the read
pool's asyncpg connections (issue 18, item 1) instead of the general path's resolve()
and ORM query.

The first reads what `resolve` reads of a connection (live, of this app, environment
and debtor; its consented scopes and companies); the caller made of it is authorized by
the declared policy itself (`authorize` with the rule `changes.list`, its scope use
noted as the dependency notes it). The second is the feed's query for that caller
(feed.changes: the visible data events of its debtor and consented companies, and its
own `connection.*` events, settled, in id order) with its lists as array parameters,
so it is compiled once. Nothing is cached: a revoked or narrowed connection shows in
the very next page. Other callers and SQLite take the general path.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
from fastapi import Request
from sqlalchemy import ARRAY, Integer, String, Uuid, and_, any_, bindparam, func, or_, select

from services.sync.read_pool import ReadPool, fetch_fields, fetch_rows
from services.sync.resources.employee_read import live_scopes
from services.sync.resources.schemas import ChangeOut
from shared.db.base import table_of
from shared.db.types import utcnow
from shared.models import App, Event
from shared.pagination import start_after
from shared.policy import RULES, Caller, CallerKind, authorize, coverage
from shared.policy.dependency import note_scope_use
from shared.tokens import Principal

RULE = RULES["changes.list"]
assert CallerKind.CONNECTION in RULE.callers

_conn = coverage.CONNECTIONS
_app = table_of(App)
_cover = coverage.COVERED
_events = table_of(Event)

CONNECTION = (
    select(_conn.c.id, _conn.c.status, _conn.c.environment_id, _conn.c.debtor_id,
           _conn.c.scopes,
           select(func.array_agg(_cover.c.company_id))
           .where(coverage.consented_company(_conn, _cover))
           .scalar_subquery().label("companies"))
    .select_from(_conn.join(_app, _app.c.id == _conn.c.app_id))
    .where(_conn.c.id == bindparam("connection_id"), _app.c.client_id == bindparam("client_id"),
           coverage.unexpired(bindparam("now"), _conn))
)

EVENTS = (
    select(_events.c.id, _events.c.type, _events.c.created_at, _events.c.data)
    .where(
        _events.c.environment_id == bindparam("environment_id"),
        or_(and_(_events.c.type == any_(bindparam("types", type_=ARRAY(String))),
                 _events.c.debtor_id == bindparam("debtor_id"),
                 or_(_events.c.company_id.is_(None),
                     _events.c.company_id == any_(bindparam("companies",
                                                            type_=ARRAY(Uuid))))),
            and_(_events.c.type.like(bindparam("connection_events")),
                 _events.c.connection_id == bindparam("connection_id"))),
        _events.c.created_at <= bindparam("settled"),
        _events.c.id > bindparam("after"))
    .order_by(_events.c.id)
    .limit(bindparam("limit", type_=Integer))
)


async def connection_caller(request: Request, pool: ReadPool, principal: Principal) -> Caller:
    """The connection's caller as `resolve` makes it, authorized by the rule (401 if the
    connection is not live or not the token's, 403 without a data scope)."""
    row: Any = await fetch_fields(pool.fetchrow, CONNECTION, {
        "connection_id": principal.connection_id, "client_id": principal.client_id,
        "now": utcnow()})
    scopes = live_scopes(row, principal)
    caller = authorize(Caller(principal, CallerKind.CONNECTION, row.environment_id,
                              frozenset({row.debtor_id}), frozenset(row.companies or ()),
                              connection_id=row.id, granted=scopes), RULE)
    await note_scope_use(request, caller, RULE)
    return caller


async def connection_changes(request: Request, pool: ReadPool, principal: Principal,
                             cursor: str | None, limit: int, kind: str, types: Any,
                             settle_s: float) -> list[ChangeOut]:
    """Up to `limit` events after the cursor's that the connection may see, as the feed
    shows them; `types(caller)` names its visible data event types."""
    after, refused = start_after(request.app.state.runtime.keyring.digest_key, kind, cursor)
    caller = await connection_caller(request, pool, principal)
    if refused is not None:
        raise refused
    assert caller.debtor_ids is not None and caller.company_ids is not None
    rows = await fetch_rows(pool.fetch, EVENTS, {
        "environment_id": caller.environment_id, "types": types(caller),
        "debtor_id": next(iter(caller.debtor_ids)), "companies": list(caller.company_ids),
        "connection_id": caller.connection_id, "connection_events": "connection.%",
        "settled": utcnow() - timedelta(seconds=settle_s), "after": after,
        "limit": limit})
    return [ChangeOut(id=row.id, type=row.type, timestamp=row.created_at,
                      data=orjson.loads(row.data) if isinstance(row.data, str) else row.data)
            for row in rows]
