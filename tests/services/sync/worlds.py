"""Test worlds for the sync service: environments, debtors, companies, employees, apps
and connections, committed (the service and the worker read them on their own)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from shared.models import App, Company, Connection, Debtor, Employee, Environment, UserTemplate
from tests.fixtures import factories as f


@dataclass
class World:
    env: Environment
    companies: list[Company]
    apps: dict[str, App]
    connections: dict[str, Connection]


@pytest.fixture
def world(committing_sessions: sessionmaker[Session]) -> World:
    """One debtor with two companies; apps with different scopes, each connected to the
    first company only."""
    scopes = {
        "info": ["employee.info.read"],
        "pay": ["employee.payment"],
        "both": ["employee.info", "employee.payment.read"],
    }
    with committing_sessions() as session, session.begin():
        env = f.make_environment(session)
        debtor = f.make_debtor(session, env)
        companies = [f.make_company(session, debtor), f.make_company(session, debtor)]
        user = f.make_user(session, env, companies=companies)
        apps = {name: f.make_app(session, scopes=s) for name, s in scopes.items()}
        connections = {name: f.make_connection(session, user, apps[name],
                                               companies=companies[:1], scopes=s)
                       for name, s in scopes.items()}
    return World(env, companies, apps, connections)


@dataclass
class Data:
    debtors: list[Debtor]
    companies: list[Company]  # c1, c2 of debtor 1; c3 of debtor 2; c4 in another environment
    employees: list[Employee]  # one per company
    app: App
    first_party: App
    connection: Connection  # debtor 1, company c1 only
    readonly: Connection  # debtor 1, c1, company.info.read only
    users: dict[str, object]


@pytest.fixture
def data(committing_sessions: sessionmaker[Session]) -> Data:
    with committing_sessions() as session, session.begin():
        env, other_env = f.make_environment(session), f.make_environment(session)
        d1, d2 = f.make_debtor(session, env), f.make_debtor(session, env)
        d3 = f.make_debtor(session, other_env)
        companies = [f.make_company(session, d1), f.make_company(session, d1),
                     f.make_company(session, d2), f.make_company(session, d3)]
        employees = [f.make_employee(session, c, email="a@example.test") for c in companies]
        user = f.make_user(session, env, companies=companies[:2])
        other_user = f.make_user(session, env, companies=companies[:1])
        app = f.make_app(session, scopes=["company.info.read", "employee.info"])
        readonly_app = f.make_app(session, scopes=["company.info.read"])
        first_party = f.make_app(session, first_party=True, environment=env)
        connection = f.make_connection(session, user, app, companies=companies[:1])
        readonly = f.make_connection(session, other_user, readonly_app, companies=companies[:1])
        users = {
            "accountant": f.make_user(session, env, template=UserTemplate.ACCOUNTANT),
            "company": user,
            "employee": f.make_user(session, env, template=UserTemplate.EMPLOYEE,
                                    debtor=d1, employee_id=employees[0].id),
        }
    return Data([d1, d2, d3], companies, employees, app, first_party, connection, readonly,
                users)
