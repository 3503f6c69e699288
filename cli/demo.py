"""The demo environment (docs/product.md section 8): one user per template, two debtors with two
companies each, employees, and a first-party client bound to the environment.

Seeding is idempotent: rows are found by their derived emails, numbers and client id,
so running it again adds nothing twice; it resets the passwords and the client secret
to fresh values, which it returns (the only time they can be read).
"""

from __future__ import annotations

import secrets
import string
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from cli import demo_data as data
from cli.output import CliError
from shared.db import utcnow
from shared.models import (
    Absence,
    App,
    AppStatus,
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
from shared.policy.resolve import app_by_client_id
from shared.scopes import FIRST_PARTY_APP_SCOPES
from shared.vault import KeyRing, TokenKind, new_token, token_digest

DEFAULT_EMPLOYEES = 5
REDIRECT_URI = "http://127.0.0.1:8080/callback"
AUTH_METHOD = "client_secret_basic"
GRANT_TYPES = ["authorization_code", "refresh_token", "client_credentials"]
PASSWORD_ALPHABET = string.ascii_letters + string.digits
PASSWORD_LENGTH = 16


@dataclass
class _Tree:
    environment: Environment
    debtors: list[tuple[Debtor, list[Company]]]


def new_password() -> str:
    """A random password of letters and digits (about 95 bits)."""
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


def seed_demo(
    session: Session, keyring: KeyRing, name: str, employees: int = DEFAULT_EMPLOYEES
) -> dict[str, Any]:
    """Create or refresh the demo environment `name`; returns what an operator needs.

    The caller owns the transaction. The returned passwords and client secret are the
    new ones; the database keeps only their hash and digest.
    """
    if employees < 1:
        raise CliError("the demo needs at least one employee per company")
    slug = data.slug_for(name)
    tree = _tree(session, _environment(session, slug, name))
    for d, (_, companies) in enumerate(tree.debtors):
        for c, company in enumerate(companies):
            _employees(session, company, slug, data.company_number(d, c), employees)
            _slices(session, company, data.company_number(d, c))
    users = _users(session, tree, slug)
    return {
        "environment": {"id": str(tree.environment.id), "name": tree.environment.name},
        "debtors": [
            {
                "id": str(debtor.id),
                "name": debtor.name,
                "companies": [{"id": str(c.id), "name": c.name} for c in companies],
            }
            for debtor, companies in tree.debtors
        ],
        "users": users,
        "first_party_client": _first_party_client(session, keyring, slug, tree.environment),
    }


def _environment(session: Session, slug: str, name: str) -> Environment:
    emails = [data.user_email(t, slug) for t in UserTemplate]
    found = set(session.exec(select(User.environment_id).where(col(User.email).in_(emails))))
    if len(found) > 1:
        raise CliError(f"the demo logins of {name!r} belong to several environments")
    if found:
        environment = session.get(Environment, found.pop())
        assert environment is not None  # the foreign key guarantees it
        if environment.name != name:
            environment.name = name
            environment.updated_at = utcnow()
        return environment
    environment = Environment(name=name)
    session.add(environment)
    return environment


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


def _employees(session: Session, company: Company, slug: str, company_no: str, count: int) -> None:
    existing = set(session.exec(select(Employee.number).where(Employee.company_id == company.id)))
    for index in range(count):
        number = data.employee_number(index)
        if number not in existing:
            session.add(
                Employee(
                    environment_id=company.environment_id, debtor_id=company.debtor_id,
                    company_id=company.id, number=number,
                    **data.employee_details(slug, company_no, index),
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


def _users(session: Session, tree: _Tree, slug: str) -> dict[str, dict[str, str]]:
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
    result = {}
    for template in UserTemplate:
        user_debtor, companies, user_employee = placement[template]
        password = new_password()
        user = _user(session, tree.environment, template, slug)
        user.name = (
            f"{user_employee.first_name} {user_employee.last_name}"
            if user_employee else data.USER_NAMES[template]
        )
        user.password_hash = hash_password(password)
        user.template = template
        user.active = True
        user.debtor_id = user_debtor.id if user_debtor else None
        user.employee_id = user_employee.id if user_employee else None
        user.updated_at = utcnow()
        session.flush()
        _set_companies(session, user.id, {c.id for c in companies})
        result[template.value] = {"id": str(user.id), "email": user.email, "password": password}
    return result


def _user(session: Session, environment: Environment, template: UserTemplate, slug: str) -> User:
    email = data.user_email(template, slug)
    user = session.exec(select(User).where(User.email == email)).first()
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


def _first_party_client(
    session: Session, keyring: KeyRing, slug: str, environment: Environment
) -> dict[str, str]:
    """The demo environment's own frontend: a first-party client bound to it."""
    client_id = data.client_id_for(slug)
    app = session.exec(app_by_client_id(client_id)).first()
    if app is None:
        app = App(client_id=client_id, name="", first_party=True)
        session.add(app)
    elif not app.first_party:
        raise CliError(f"client id {client_id} belongs to a third-party app")
    elif app.platform or app.environment_id not in (None, environment.id):
        raise CliError(f"client id {client_id} is not bound to this demo environment "
                       "(an operator placed it elsewhere)")
    secret = new_token(TokenKind.CLIENT_SECRET)
    app.environment_id, app.platform = environment.id, False
    app.name = f"Koppel web ({environment.name})"
    app.publisher = "Koppel"
    app.redirect_uris = [REDIRECT_URI]
    app.scopes = list(FIRST_PARTY_APP_SCOPES)
    app.grant_types = list(GRANT_TYPES)
    app.response_types = ["code"]
    app.token_endpoint_auth_method = AUTH_METHOD
    app.client_secret_digest = token_digest(keyring.digest_key, secret)
    app.status = AppStatus.ACTIVE
    app.updated_at = utcnow()
    session.flush()
    return {"client_id": client_id, "client_secret": secret, "redirect_uri": REDIRECT_URI}
