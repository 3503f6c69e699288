"""Seeding an environment with made-up Dutch payroll data (shared/demo/data.py): two
debtors with two companies each, employees with employments, salaries, bank accounts,
leave, absences and payroll runs, and one login of every template. `koppel demo seed`
(cli/demo.py) and a partner's sandbox (the registry) both seed through it.

Seeding is idempotent: rows are found by their numbers and emails within the environment,
so running it again adds nothing twice; it resets the passwords to fresh values, which it
returns (the only time they can be read). A login email that belongs to a user of another
environment is a conflict (409), never taken over: the seeder fails before it writes any
login, and the caller's transaction is rolled back. It runs on a synchronous session (the
registry calls it through `AsyncSession.run_sync`); the caller owns the transaction.
"""

from __future__ import annotations

import secrets
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, select

from shared.db import utcnow
from shared.demo import data
from shared.errors import Conflict
from shared.models import (
    Absence,
    BankAccount,
    Company,
    Debtor,
    Employee,
    Employment,
    Environment,
    LeaveBalance,
    LeaveRequest,
    PayrollRun,
    User,
    UserCompany,
    UserTemplate,
    WageComponent,
)
from shared.passwords import hash_password

PASSWORD_ALPHABET = string.ascii_letters + string.digits
PASSWORD_LENGTH = 16


@dataclass
class _Tree:
    environment: Environment
    debtors: list[tuple[Debtor, list[Company]]]


def new_password() -> str:
    """A random password of letters and digits (about 95 bits)."""
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


def new_login() -> tuple[str, str]:
    """A new password and its hash."""
    password = new_password()
    return password, hash_password(password)


def seed_environment(session: Session, environment: Environment, domain: str,
                     employees: int, *, logins: Callable[[], tuple[str, str]] = new_login
                     ) -> dict[str, Any]:
    """Fill `environment` (added to the session) with the demo data; emails lie on
    `domain`. Returns its debtors and companies and the logins with their new passwords.
    `logins` gives each login its password and hash (an async caller hashes them in a
    thread beforehand)."""
    tree = _tree(session, environment)
    for d, (_, companies) in enumerate(tree.debtors):
        for c, company in enumerate(companies):
            _employees(session, company, domain, data.company_number(d, c), employees)
            _slices(session, company, data.company_number(d, c))
    users = _users(session, tree, domain, logins)
    return {
        "debtors": [
            {
                "id": str(debtor.id),
                "name": debtor.name,
                "companies": [{"id": str(c.id), "name": c.name} for c in companies],
            }
            for debtor, companies in tree.debtors
        ],
        "users": users,
    }


def _tree(session: Session, environment: Environment) -> _Tree:
    debtors = []
    for d, (debtor_name, company_names) in enumerate(data.DEBTORS):
        number = data.debtor_number(d)
        debtor = session.exec(
            select(Debtor).where(Debtor.environment_id == environment.id, Debtor.number == number)
        ).first()
        if debtor is None:
            debtor = Debtor(environment_id=environment.id, name=debtor_name, number=number)
            session.add(debtor)
        companies = [
            _company(session, debtor, d, c, company_name)
            for c, company_name in enumerate(company_names)
        ]
        debtors.append((debtor, companies))
    return _Tree(environment, debtors)


def _company(session: Session, debtor: Debtor, d: int, c: int, name: str) -> Company:
    number = data.company_number(d, c)
    company = session.exec(
        select(Company).where(Company.debtor_id == debtor.id, Company.number == number)
    ).first()
    if company is None:
        company = Company(
            environment_id=debtor.environment_id, debtor_id=debtor.id, name=name, number=number,
            **data.company_details(d, c),
        )
        session.add(company)
    return company


def _employees(session: Session, company: Company, domain: str, company_no: str,
               count: int) -> None:
    existing = set(session.exec(select(Employee.number).where(Employee.company_id == company.id)))
    for index in range(count):
        number = data.employee_number(index)
        if number not in existing:
            session.add(
                Employee(
                    environment_id=company.environment_id, debtor_id=company.debtor_id,
                    company_id=company.id, number=number,
                    **data.employee_details(domain, company_no, index),
                )
            )
    session.flush()


def _slices(session: Session, company: Company, company_no: str) -> None:
    """Employments, wage components, bank accounts, leave and absence of the company's
    demo employees, and its payroll runs; an employee that has rows of a kind keeps
    them (so a re-seed adds nothing twice and keeps changes made through the API)."""
    staff = session.exec(select(Employee).where(Employee.company_id == company.id)).all()
    demo = [(int(e.number) - 1, e) for e in staff if e.number.isdigit()]
    for model, rows_of in (
        (Employment, lambda i: [data.employment_details(company_no, i)]),
        (WageComponent, lambda i: data.wage_components(company_no, i)),
        (BankAccount, lambda i: [{"iban": data.iban(company_no, i), "account_holder": None}]),
        (LeaveBalance, lambda i: data.leave_balances(company_no, i)),
        (LeaveRequest, lambda i: data.leave_requests(company_no, i)),
        (Absence, lambda i: data.absences(company_no, i)),
    ):
        done = set(session.exec(select(model.employee_id).where(
            model.company_id == company.id)))
        for index, employee in demo:
            if employee.id in done:
                continue
            for fields in rows_of(index):
                if model is BankAccount:
                    fields = {**fields, "account_holder":
                              f"{employee.first_name[0]}. {employee.last_name}"}
                session.add(model(environment_id=company.environment_id,
                                  debtor_id=company.debtor_id, company_id=company.id,
                                  employee_id=employee.id, **fields))
    periods = set(session.exec(select(PayrollRun.period).where(
        PayrollRun.company_id == company.id)))
    salaries = [data.wage_components(company_no, i)[0]["amount_cents"] for i, _ in demo
                if data.employment_details(company_no, i)["end_date"] is None]
    for number, period in enumerate(data.PAYROLL_PERIODS):
        if period not in periods:
            year, month = map(int, period.split("-"))
            session.add(PayrollRun(
                environment_id=company.environment_id, debtor_id=company.debtor_id,
                company_id=company.id, finalized_at=datetime(year, month, 25, 12, number,
                                                              tzinfo=UTC),
                **data.payroll_run(period, salaries)))
    session.flush()


def _first_employee(session: Session, company: Company) -> Employee:
    return session.exec(
        select(Employee).where(
            Employee.company_id == company.id, Employee.number == data.employee_number(0)
        )
    ).one()


def _users(session: Session, tree: _Tree, domain: str,
           logins: Callable[[], tuple[str, str]]) -> dict[str, dict[str, str]]:
    debtor, (company, second_company) = tree.debtors[0]
    employee = _first_employee(session, company)
    # template -> (debtor, companies, employee) as docs/product.md section 8 places each login
    placement: dict[UserTemplate, tuple[Debtor | None, list[Company], Employee | None]] = {
        UserTemplate.ACCOUNTANT: (None, [], None),
        UserTemplate.MASTER_CLIENT: (debtor, [company, second_company], None),
        UserTemplate.COMPANY: (debtor, [company], None),
        UserTemplate.HR_MANAGER: (debtor, [company], None),
        UserTemplate.PAYROLL_HR_MANAGER: (debtor, [company], None),
        UserTemplate.EMPLOYEE: (debtor, [company], employee),
    }
    users = {template: _user(session, tree.environment, template, domain)
             for template in UserTemplate}
    result = {}
    for template in UserTemplate:
        user_debtor, companies, user_employee = placement[template]
        password, password_hash = logins()
        user = users[template]
        user.name = (
            f"{user_employee.first_name} {user_employee.last_name}"
            if user_employee else data.USER_NAMES[template]
        )
        user.password_hash = password_hash
        user.template = template
        user.active = True
        user.debtor_id = user_debtor.id if user_debtor else None
        user.employee_id = user_employee.id if user_employee else None
        user.updated_at = utcnow()
        session.flush()
        _set_companies(session, user.id, {c.id for c in companies})
        result[template.value] = {"id": str(user.id), "email": user.email, "password": password}
    return result


def _user(session: Session, environment: Environment, template: UserTemplate,
          domain: str) -> User:
    """The environment's login of this template, new or found by its email. An email
    already held by another environment's user is refused, never overwritten (emails are
    unique platform-wide)."""
    email = data.user_email(template, domain)
    user = session.exec(select(User).where(User.email == email)).first()
    if user is not None and user.environment_id != environment.id:
        raise Conflict(f"the login email {email} belongs to another environment")
    if user is None:
        user = User(
            environment_id=environment.id, email=email, name="", password_hash="",
            template=template,
        )
        session.add(user)
    return user


def _set_companies(session: Session, user_id: uuid.UUID, wanted: set[uuid.UUID]) -> None:
    rows = session.exec(select(UserCompany).where(UserCompany.user_id == user_id)).all()
    for row in rows:
        if row.company_id not in wanted:
            session.delete(row)
    for company_id in wanted - {row.company_id for row in rows}:
        session.add(UserCompany(user_id=user_id, company_id=company_id))
