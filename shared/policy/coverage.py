"""Which employees a connection's tokens may read: the one definition, as SQL.

A connection covers an employee when the employee lies in the connection's environment
and debtor (`same_owner`) and the consent names the employee's company: a row of
`connection_companies` of this connection (`consented_company`) for the employee's
company (`of_company`). Its tokens read only while it is live: active and not past its
`expires_at` (`unexpired`; `live` adds the status).

The data API's one-statement employee read (services/sync/resources/employee_read.py)
joins by these expressions, and so does "who can read me" (services/registry/exposure),
so the two can never disagree. The general path says the same with a resolved connection
`Caller` (its companies are the consent's rows; `reach.conditions`), which
tests/services/sync/test_employee_read_parity.py holds equal to the fast read.

Each function takes the Core tables (or aliases) to build the expression on; for the
employee, `Subject` stands in for one known employee (its columns as scalar subqueries),
so a query can start at the consent rows of that employee's company, in index order.
"""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

from sqlalchemy import ColumnElement, FromClause, and_, or_, select

from shared.db.base import table_of
from shared.models import Connection, ConnectionCompany, ConnectionStatus, Employee

CONNECTIONS = table_of(Connection)
EMPLOYEES = table_of(Employee)
COVERED = table_of(ConnectionCompany)


class Subject:
    """One employee of one environment, standing where the employees table would: its
    `c.environment_id`, `c.debtor_id` and `c.company_id` are scalar subqueries of its row
    (NULL when the environment has no such employee, which then covers nothing)."""

    def __init__(self, employee_id: uuid.UUID, environment_id: uuid.UUID) -> None:
        def column(name: str) -> Any:
            return (select(EMPLOYEES.c[name])
                    .where(EMPLOYEES.c.id == employee_id,
                           EMPLOYEES.c.environment_id == environment_id)
                    .scalar_subquery())

        self.c = SimpleNamespace(environment_id=column("environment_id"),
                                 debtor_id=column("debtor_id"),
                                 company_id=column("company_id"))


Employees = FromClause | Subject


def same_owner(connections: FromClause, employees: Employees) -> list[ColumnElement[bool]]:
    """The employee lies in the connection's environment and debtor."""
    return [employees.c.environment_id == connections.c.environment_id,
            employees.c.debtor_id == connections.c.debtor_id]


def consented_company(connections: FromClause, covered: FromClause) -> ColumnElement[bool]:
    """The `connection_companies` row is one of the connection's consent."""
    return covered.c.connection_id == connections.c.id


def of_company(covered: FromClause, employees: Employees) -> ColumnElement[bool]:
    """The `connection_companies` row names the employee's company."""
    return covered.c.company_id == employees.c.company_id


def covers(connections: FromClause = CONNECTIONS, employees: Employees = EMPLOYEES,
           covered: FromClause = COVERED) -> list[ColumnElement[bool]]:
    """Every condition of "the connection covers the employee", together."""
    return [*same_owner(connections, employees), consented_company(connections, covered),
            of_company(covered, employees)]


def unexpired(now: Any, connections: FromClause = CONNECTIONS) -> ColumnElement[bool]:
    """The connection is not past its `expires_at` at `now` (a value or a bind
    parameter): tokens fail from `expires_at` on, whether or not the worker's job has
    turned the connection `expired` yet (`shared.models.is_live`)."""
    expires_at = connections.c.expires_at
    return or_(expires_at.is_(None), expires_at > now)


def live(now: Any, connections: FromClause = CONNECTIONS) -> ColumnElement[bool]:
    """The connection's tokens work at `now`: active and unexpired (`is_live` in SQL)."""
    return and_(connections.c.status == ConnectionStatus.ACTIVE, unexpired(now, connections))
