"""Reading an employee's data-access log: pages newest day first, and every entry in
batches for CSV. The queries run on the index (employee_id, day, id)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

from sqlalchemy import tuple_
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.registry.data_access.schemas import AccessApp, AccessEntry, AccessQuery
from shared.errors import NotFound
from shared.models import App, DataAccess, Employee
from shared.pagination import InvalidParameter, check_limit, decode_cursor, encode_cursor

CURSOR_KIND = "data-access"
BATCH = 1000


def _statement(environment_id: uuid.UUID, employee_id: uuid.UUID, query: AccessQuery) -> Any:
    stmt = (select(DataAccess, App.name)
            .outerjoin(App, col(App.client_id) == col(DataAccess.client_id))
            .where(DataAccess.employee_id == employee_id,
                   DataAccess.environment_id == environment_id))
    if query.client_id is not None:
        stmt = stmt.where(DataAccess.client_id == query.client_id)
    if query.scope is not None:
        stmt = stmt.where(DataAccess.scope == query.scope)
    if query.action is not None:
        stmt = stmt.where(DataAccess.action == query.action)
    if query.since is not None:
        stmt = stmt.where(col(DataAccess.day) >= query.since)
    if query.until is not None:
        stmt = stmt.where(col(DataAccess.day) <= query.until)
    return stmt.order_by(col(DataAccess.day).desc(), col(DataAccess.id).desc())


def _after(stmt: Any, position: tuple[date, uuid.UUID] | None) -> Any:
    if position is None:
        return stmt
    return stmt.where(tuple_(col(DataAccess.day), col(DataAccess.id)) < tuple_(*position))


def _entry(row: DataAccess, app_name: str | None) -> AccessEntry:
    return AccessEntry(
        app=AccessApp(client_id=row.client_id, name=app_name or row.client_id),
        connection_id=row.connection_id, first_party=row.first_party, scope=row.scope,
        action=row.action, day=row.day, count=row.count, first_at=row.first_at,
        last_at=row.last_at)


def _position(key: bytes, cursor: str | None) -> tuple[date, uuid.UUID] | None:
    if cursor is None:
        return None
    try:
        day, ident = decode_cursor(key, CURSOR_KIND, cursor)
        return date.fromisoformat(day), uuid.UUID(ident)
    except (TypeError, ValueError):
        raise InvalidParameter("the cursor is not valid for this list",
                               parameter="cursor") from None


async def _is_employee(session: AsyncSession, environment_id: uuid.UUID,
                       employee_id: uuid.UUID) -> bool:
    found = await session.exec(select(Employee.id).where(
        Employee.id == employee_id, Employee.environment_id == environment_id))
    return found.first() is not None


async def log_page(session: AsyncSession, key: bytes, environment_id: uuid.UUID,
                   employee_id: uuid.UUID, query: AccessQuery
                   ) -> tuple[list[AccessEntry], str | None]:
    """One page of the employee's log, newest day first, and the next page's cursor."""
    stmt = _after(_statement(environment_id, employee_id, query), _position(key, query.cursor))
    rows = (await session.exec(stmt.limit(query.limit + 1))).all()
    more, rows = len(rows) > query.limit, rows[:query.limit]
    cursor = None
    if more:
        last = rows[-1][0]
        cursor = encode_cursor(key, CURSOR_KIND, [last.day.isoformat(), str(last.id)])
    return [_entry(row, name) for row, name in rows], cursor


async def employee_log(session: AsyncSession, key: bytes, environment_id: uuid.UUID,
                       employee_id: uuid.UUID, query: AccessQuery
                       ) -> tuple[list[AccessEntry], str | None]:
    """An employee of the accountant's environment: 404 for any other id."""
    check_limit(query.limit)
    _position(key, query.cursor)
    if not await _is_employee(session, environment_id, employee_id):
        raise NotFound("no such employee")
    return await log_page(session, key, environment_id, employee_id, query)


async def own_log(session: AsyncSession, key: bytes, environment_id: uuid.UUID,
                  employee_id: uuid.UUID | None, query: AccessQuery
                  ) -> tuple[list[AccessEntry], str | None]:
    """The calling user's own employee record (`User.employee_id`); a login linked to no
    record of its environment has no log: an empty list."""
    check_limit(query.limit)
    _position(key, query.cursor)  # a bad cursor is a 400 all the same
    if employee_id is None or not await _is_employee(session, environment_id, employee_id):
        return [], None
    return await log_page(session, key, environment_id, employee_id, query)


async def log_batches(session_factory: async_sessionmaker, environment_id: uuid.UUID,
                      employee_id: uuid.UUID, query: AccessQuery
                      ) -> AsyncIterator[list[AccessEntry]]:
    """Every matching entry, in batches of BATCH, each read in a short session (CSV)."""
    position = None
    while True:
        async with session_factory() as session:
            stmt = _after(_statement(environment_id, employee_id, query), position)
            rows = (await session.exec(stmt.limit(BATCH))).all()
        if not rows:
            return
        yield [_entry(row, name) for row, name in rows]
        last = rows[-1][0]
        position = (last.day, last.id)
        if len(rows) < BATCH:
            return
