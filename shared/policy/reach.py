"""How far a caller reaches, computed once per request, and the same reach as SQL.

`Caller` is the resolved caller of a request: its kind, its reach (environment, debtors,
companies, own employee record) and, for a connection, the scopes of the current consent.
`conditions` turns that reach into the WHERE clauses of the data API's queries;
`Caller.reaches` is the same rule in Python (the role matrix's oracle, and the check of a
single object). `user_company_ids` is the one definition of "a user's companies", used by
consent (auth), the suspension and narrowing rules (registry) and the data API (sync).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement
from sqlmodel import col, select
from sqlmodel.sql.expression import SelectOfScalar

from shared.models import App, Company, Debtor, Employee, User, UserCompany, UserTemplate
from shared.policy.callers import CallerKind
from shared.policy.rules import Rule
from shared.scopes import grants
from shared.tokens import Principal

# The id no row has: an employee login without an employee record reaches nothing.
NOBODY = uuid.UUID(int=0)


@dataclass(frozen=True)
class Caller:
    """The verified caller of a request and what it reaches. `None` for `debtor_ids` or
    `company_ids` means all of the environment's (debtors) or of the reached debtors'
    (companies); `environment_id` None means every environment (the platform's own app)."""

    principal: Principal
    kind: CallerKind
    environment_id: uuid.UUID | None
    debtor_ids: frozenset[uuid.UUID] | None = None
    company_ids: frozenset[uuid.UUID] | None = None
    employee_id: uuid.UUID | None = None  # the self-service employee's own record only
    connection_id: uuid.UUID | None = None
    # A connection's granted scopes: a token never reaches beyond the current consent.
    granted: frozenset[str] | None = None
    user: User | None = field(default=None, compare=False, repr=False)
    app: App | None = field(default=None, compare=False, repr=False)
    rule: Rule | None = field(default=None, compare=False)

    def has_scope(self, scope: str) -> bool:
        """Whether the token (and, for a connection, the consent) grants `scope`."""
        if self.granted is not None and not grants(self.granted, scope):
            return False
        return self.principal.has_scope(scope)

    def may_set(self, values: Mapping[str, Any]) -> bool:
        """Whether the operation's rule lets this caller write these field values."""
        limits = self.rule.values.get(self.kind, {}) if self.rule else {}
        return all(str(values[name]) in allowed
                   for name, allowed in limits.items() if name in values)

    def reaches(self, environment_id: uuid.UUID, debtor_id: uuid.UUID | None = None,
                company_id: uuid.UUID | None = None, employee_id: uuid.UUID | None = None
                ) -> bool:
        """Whether an object with these owners lies within reach (what `conditions`
        says in SQL). For a debtor, pass its id as `debtor_id` and no company."""
        if self.environment_id is not None and environment_id != self.environment_id:
            return False
        if self.debtor_ids is not None and debtor_id not in self.debtor_ids:
            return False
        if self.company_ids is not None and company_id is not None \
                and company_id not in self.company_ids:
            return False
        if self.employee_id is not None and employee_id is not None:
            return employee_id == self.employee_id
        return True


def conditions(caller: Caller, model: Any) -> list[ColumnElement[bool]]:
    """The WHERE clauses that keep rows of `model` (Debtor, Company, Employee or a table
    with environment_id, debtor_id, company_id and employee_id columns) within reach."""
    clauses: list[ColumnElement[bool]] = []
    if caller.environment_id is not None:
        clauses.append(col(model.environment_id) == caller.environment_id)
    if caller.debtor_ids is not None:
        column = model.id if model is Debtor else model.debtor_id
        clauses.append(col(column).in_(caller.debtor_ids))
    if caller.company_ids is not None:
        if model is Debtor:
            # A company-level caller sees the debtors of its companies only.
            clauses.append(col(Debtor.id).in_(select(Company.debtor_id).where(
                col(Company.id).in_(caller.company_ids))))
        else:
            column = model.id if model is Company else model.company_id
            clauses.append(col(column).in_(caller.company_ids))
    if caller.employee_id is not None and model is not Debtor and model is not Company:
        column = model.id if model is Employee else model.employee_id
        clauses.append(col(column) == caller.employee_id)
    return clauses


def user_company_ids(user: User) -> SelectOfScalar[uuid.UUID] | None:
    """The ids of the companies `user` reaches (docs/product.md section 3), as a query;
    None for an accountant, who reaches the whole environment. A master client reaches
    every company of its debtor; company, HR and payroll logins the companies assigned to
    them within their debtor; a self-service employee the company of its own record."""
    if user.template == UserTemplate.ACCOUNTANT:
        return None
    if user.template == UserTemplate.EMPLOYEE:
        return select(Employee.company_id).where(
            Employee.id == (user.employee_id or NOBODY),
            Employee.environment_id == user.environment_id)
    if user.template == UserTemplate.MASTER_CLIENT:
        return select(Company.id).where(Company.debtor_id == user.debtor_id,
                                        Company.environment_id == user.environment_id)
    return (select(UserCompany.company_id)
            .join(Company, col(Company.id) == col(UserCompany.company_id))
            .where(UserCompany.user_id == user.id, Company.debtor_id == user.debtor_id,
                   Company.environment_id == user.environment_id))


def user_companies(user: User) -> SelectOfScalar[Company] | None:
    """The companies `user` reaches (rows, by name), as `user_company_ids` defines them."""
    ids = user_company_ids(user)
    if ids is None:
        return None
    return select(Company).where(col(Company.id).in_(ids)).order_by(col(Company.name))
