"""The exposure query: one employee's covering connections in one indexed statement.

The consent rows of the employee's company drive it, in connection order
(`connection_companies (company_id, connection_id)`), then the connections by primary
key; the coverage conditions are the policy's (shared/policy/coverage.py), the same
expressions the data API's employee read joins by. The employee's row is outer-joined to
the page, so an employee that no connection covers still answers one row (an empty list,
not 404).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, not_, or_, select, true
from sqlmodel.ext.asyncio.session import AsyncSession

from services.registry.exposure.schemas import ExposureStatus
from shared.db.base import table_of
from shared.models import App, ConnectionStatus, User
from shared.policy import coverage

_conn = coverage.CONNECTIONS
_emp = coverage.EMPLOYEES
_cover = coverage.COVERED
_app = table_of(App)
_user = table_of(User)


def status_conditions(status: ExposureStatus, now: datetime) -> list[ColumnElement[bool]]:
    """The connections of `status` at `now`: active means live (its tokens read now), and
    expired includes the active ones past their expiry that the job has not marked yet."""
    if status == ExposureStatus.ALL:
        return []
    if status == ExposureStatus.ACTIVE:
        return [coverage.live(now, _conn)]
    if status == ExposureStatus.EXPIRED:
        return [or_(_conn.c.status == ConnectionStatus.EXPIRED,
                    and_(_conn.c.status == ConnectionStatus.ACTIVE,
                         not_(coverage.unexpired(now, _conn))))]
    return [_conn.c.status == ConnectionStatus(status.value)]


def exposure_statement(environment_id: uuid.UUID, employee_id: uuid.UUID,
                       status: ExposureStatus, now: datetime, after: uuid.UUID | None,
                       limit: int) -> Any:
    """The statement: the employee's row (none outside `environment_id`) with each
    covering connection of `status` after `after`, in id order, `limit` of them.

    The page is a derived table that starts at the consent rows of the employee's company
    (`Subject`: its columns as scalar subqueries) and walks them in connection order by
    the (company_id, connection_id) index, so it stops after `limit` matches however
    many connections cover the company (PostgreSQL may instead hash-join and sort the
    company's consents: about a microsecond each). Apps and users are joined to the page
    only. The employee's row is outer-joined to it, so an employee that nothing covers
    still answers one row (an empty list, not 404)."""
    subject = coverage.Subject(employee_id, environment_id)
    where = [coverage.of_company(_cover, subject), *coverage.same_owner(_conn, subject),
             *status_conditions(status, now)]
    if after is not None:
        where.append(_cover.c.connection_id > after)
    covering = (
        select(_conn.c.id, _conn.c.status, _conn.c.scopes, _conn.c.created_at,
               _conn.c.last_used_at, _conn.c.expires_at, _conn.c.app_id, _conn.c.user_id)
        .select_from(_cover.join(_conn, coverage.consented_company(_conn, _cover)))
        .where(*where)
        .order_by(_cover.c.connection_id)
        .limit(limit)
        .subquery("covering")
    )
    named = (covering.join(_app, _app.c.id == covering.c.app_id)
             .join(_user, _user.c.id == covering.c.user_id))
    return (
        select(covering.c.id, covering.c.status, covering.c.scopes, covering.c.created_at,
               covering.c.last_used_at, covering.c.expires_at, _app.c.client_id,
               _app.c.name.label("app_name"), _user.c.id.label("user_id"),
               _user.c.email.label("user_email"), _user.c.template.label("user_template"))
        .select_from(_emp.outerjoin(named, true()))
        .where(_emp.c.id == employee_id, _emp.c.environment_id == environment_id)
        .order_by(covering.c.id)
    )


class ExposureRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def covering(self, environment_id: uuid.UUID, employee_id: uuid.UUID,
                       status: ExposureStatus, now: datetime, after: uuid.UUID | None,
                       limit: int) -> list[Row[Any]] | None:
        """The covering connections (rows of `exposure_statement`); None when the
        environment has no such employee."""
        stmt = exposure_statement(environment_id, employee_id, status, now, after, limit)
        rows = list((await self.session.exec(stmt)).all())
        if not rows:
            return None
        return [row for row in rows if row.id is not None]
