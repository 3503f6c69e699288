"""`koppel demo seed`: the documented JSON, the placement of each login, idempotency."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import func
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, select

from cli.demo import seed_demo
from shared.config import Settings
from shared.models import (
    App,
    Company,
    Debtor,
    Employee,
    Environment,
    User,
    UserCompany,
    UserTemplate,
)
from shared.passwords import verify_password
from shared.scopes import APP_SCOPES, SCOPES
from shared.vault import KeyRing, digest_matches
from tests.cli.conftest import Invoke, Koppel

TABLES = [Environment, Debtor, Company, Employee, User, UserCompany, App]


def _counts(session: Session) -> dict[str, int]:
    return {
        model.__tablename__: session.exec(select(func.count()).select_from(model)).one()
        for model in TABLES
    }


def test_json_is_the_only_output_and_has_the_documented_shape(
    koppel: Koppel, settings: Settings
) -> None:
    result = koppel("demo", "seed", "--json", "--name", "Shape Test", "--employees", "2")

    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)  # anything besides one document fails here
    assert list(document)[:5] == ["environment", "debtors", "users", "first_party_client", "urls"]
    assert set(document["environment"]) == {"id", "name"}
    assert document["environment"]["name"] == "Shape Test"
    assert len(document["debtors"]) == 2
    for debtor in document["debtors"]:
        assert set(debtor) == {"id", "name", "companies"}
        assert [set(c) for c in debtor["companies"]] == [{"id", "name"}] * 2
    assert list(document["users"]) == [t.value for t in UserTemplate]
    for template, user in document["users"].items():
        assert set(user) == {"id", "email", "password"}
        assert user["email"] == f"{template}@shape-test.koppel.test"
        assert len(user["password"]) >= 16
    client = document["first_party_client"]
    assert set(client) == {"client_id", "client_secret", "redirect_uri"}
    assert client["client_id"] == "koppel-web-shape-test"
    assert client["redirect_uri"].startswith("http://127.0.0.1:")
    assert document["urls"] == {
        "auth": settings.auth_url, "registry": settings.registry_url, "sync": settings.sync_url,
    }


def test_seeding_again_duplicates_nothing_and_resets_the_secrets(
    invoke: Invoke, committing_sessions: sessionmaker[Session], keyring: KeyRing
) -> None:
    first = json.loads(invoke("demo", "seed", "--json", "--name", "again").stdout)
    with committing_sessions() as session:
        counts = _counts(session)

    second_run = invoke("demo", "seed", "--json", "--name", "again")
    assert second_run.exit_code == 0, second_run.stderr
    second = json.loads(second_run.stdout)

    with committing_sessions() as session:
        assert _counts(session) == counts
        for template, user in second["users"].items():
            assert user["id"] == first["users"][template]["id"]
            stored = session.exec(select(User).where(User.email == user["email"])).one()
            assert verify_password(stored.password_hash, user["password"])
        old_password = first["users"]["accountant"]["password"]
        accountant = session.get(User, uuid.UUID(first["users"]["accountant"]["id"]))
        assert not verify_password(accountant.password_hash, old_password)
        client_id = second["first_party_client"]["client_id"]
        app = session.exec(select(App).where(App.client_id == client_id)).one()
    assert second["environment"] == first["environment"]
    assert second["debtors"] == first["debtors"]
    new_secret = second["first_party_client"]["client_secret"]
    assert digest_matches(keyring.digest_key, new_secret, app.client_secret_digest)
    old_secret = first["first_party_client"]["client_secret"]
    assert not digest_matches(keyring.digest_key, old_secret, app.client_secret_digest)


def test_each_login_sits_where_the_spec_places_it(db_session: Session, keyring: KeyRing) -> None:
    document = seed_demo(db_session, keyring, "Placement", employees=2)

    users = {
        template: db_session.get(User, _uuid(user["id"]))
        for template, user in document["users"].items()
    }
    debtor1, debtor2 = [_uuid(d["id"]) for d in document["debtors"]]
    company1, company2 = [_uuid(c["id"]) for c in document["debtors"][0]["companies"]]

    def companies_of(user: User) -> set[uuid.UUID]:
        rows = db_session.exec(select(UserCompany).where(UserCompany.user_id == user.id)).all()
        return {row.company_id for row in rows}

    accountant = users["accountant"]
    assert accountant.debtor_id is None and companies_of(accountant) == set()
    assert users["master_client"].debtor_id == debtor1
    assert companies_of(users["master_client"]) == {company1, company2}
    for template in ("company", "hr_manager", "payroll_hr_manager", "employee"):
        assert users[template].debtor_id == debtor1
        assert companies_of(users[template]) == {company1}
    employee = db_session.get(Employee, users["employee"].employee_id)
    assert employee is not None and employee.company_id == company1
    assert all(user.debtor_id != debtor2 for user in users.values())
    assert {u.template for u in users.values()} == set(UserTemplate)

    app = db_session.exec(select(App).where(App.client_id == "koppel-web-placement")).one()
    # The demo's own frontend: bound to the demo environment, never platform-wide.
    assert app.first_party and not app.platform
    assert app.environment_id == _uuid(document["environment"]["id"])
    assert app.token_endpoint_auth_method == "client_secret_basic"
    assert set(app.scopes) == set(SCOPES) - APP_SCOPES
    assert set(app.grant_types) >= {"authorization_code", "refresh_token"}
    assert app.client_secret_digest != document["first_party_client"]["client_secret"]


def test_more_employees_on_a_later_run_adds_only_the_missing_ones(
    db_session: Session, keyring: KeyRing
) -> None:
    seed_demo(db_session, keyring, "Growing", employees=1)
    document = seed_demo(db_session, keyring, "Growing", employees=3)

    environment_id = _uuid(document["environment"]["id"])
    count = db_session.exec(
        select(func.count()).select_from(Employee).where(Employee.environment_id == environment_id)
    ).one()
    assert count == 4 * 3


def _uuid(value: str) -> uuid.UUID:
    return uuid.UUID(value)
