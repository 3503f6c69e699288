"""`koppel directory ...`: the operator's provisioning (SPEC 5.7), with the API's rules."""

from __future__ import annotations

import json
import uuid

import redis
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, select

from shared.audit import verify_environment
from shared.models import AuditEvent, Connection, ConnectionStatus, User
from shared.status import INACTIVE, Subject, status_key
from tests.cli.conftest import Invoke
from tests.fixtures import factories as f


def _json(result) -> dict:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _tree(invoke: Invoke) -> tuple[dict, dict, list[dict]]:
    env = _json(invoke("directory", "environment", "create", "Kantoor Noord", "--json"))
    env = env["environment"]
    debtor = _json(invoke("directory", "debtor", "create", "Bakkerij", "--environment",
                          env["id"], "--number", "D-1", "--json"))["debtor"]
    companies = [_json(invoke("directory", "company", "create", f"Bakkerij {n}", "--debtor",
                              debtor["id"], "--number", f"C-{n}", "--json"))["company"]
                 for n in (1, 2)]
    return env, debtor, companies


def test_create_an_environment_debtor_companies_and_users(
    invoke: Invoke, committing_sessions: sessionmaker[Session]
) -> None:
    env, debtor, companies = _tree(invoke)
    assert env["name"] == "Kantoor Noord" and env["consent_templates"] is None
    assert debtor["environment_id"] == env["id"] and debtor["number"] == "D-1"
    assert {c["debtor_id"] for c in companies} == {debtor["id"]}

    accountant = _json(invoke("directory", "user", "create", "Boss@Example.test",
                              "--environment", env["id"], "--template", "accountant",
                              "--json"))["user"]
    assert accountant["email"] == "boss@example.test" and accountant["debtor_id"] is None
    hr = _json(invoke("directory", "user", "create", "hr@example.test", "--environment",
                      env["id"], "--template", "hr_manager", "--company", companies[0]["id"],
                      "--company", companies[1]["id"], "--name", "Henk", "--json"))["user"]
    assert hr["debtor_id"] == debtor["id"] and hr["name"] == "Henk"
    assert sorted(hr["company_ids"]) == sorted(c["id"] for c in companies)
    master = _json(invoke("directory", "user", "create", "mc@example.test", "--environment",
                          env["id"], "--template", "master_client", "--debtor", debtor["id"],
                          "--inactive", "--json"))["user"]
    assert master["active"] is False

    with committing_sessions() as session:
        actions = session.exec(select(AuditEvent.action, AuditEvent.actor_type).where(
            AuditEvent.environment_id == uuid.UUID(env["id"]))).all()
        assert verify_environment(session, uuid.UUID(env["id"])) == []
    assert sorted(a for a, _ in actions) == sorted([
        "environment.created", "debtor.created", "company.created", "company.created",
        "user.created", "user.created", "user.created"])
    assert {t for _, t in actions} == {"operator"}


def test_readable_output_without_json(invoke: Invoke) -> None:
    result = invoke("directory", "environment", "create", "Plain")
    assert result.exit_code == 0 and "Plain" in result.stdout


def test_rule_violations_are_one_line_and_exit_2(
    invoke: Invoke, committing_sessions: sessionmaker[Session]
) -> None:
    env, debtor, _ = _tree(invoke)
    _json(invoke("directory", "user", "create", "taken@example.test", "--environment",
                 env["id"], "--template", "accountant", "--json"))
    cases = [
        (("user", "create", "taken@example.test", "--environment", env["id"], "--template",
          "accountant"), "exists"),
        (("user", "create", "x@example.test", "--environment", env["id"], "--template",
          "company"), "needs at least one company"),
        (("user", "create", "y@example.test", "--environment", env["id"], "--template",
          "accountant", "--debtor", debtor["id"]), "whole environment"),
        (("user", "create", "not-an-email", "--environment", env["id"], "--template",
          "accountant"), "email"),
        (("debtor", "create", "X", "--environment", str(uuid.uuid4()), "--number", "1"),
         "no such environment"),
        (("company", "create", "X", "--debtor", "nope", "--number", "1"), "UUID"),
        (("user", "set", "nobody@example.test", "--inactive"), "no user"),
        (("user", "set", "taken@example.test"), "nothing to change"),
    ]
    for args, reason in cases:
        result = invoke("directory", *args)
        assert result.exit_code == 2, (args, result.stdout)
        assert result.stdout == ""
        assert result.stderr.startswith("koppel: error: ") and reason in result.stderr, \
            result.stderr
        assert result.stderr.count("\n") == 1
    with committing_sessions() as session:
        emails = session.exec(select(User.email)).all()
    assert sorted(emails) == ["taken@example.test"]


def test_deactivating_a_user_suspends_their_connections_and_publishes_it(
    invoke: Invoke, committing_sessions: sessionmaker[Session], redis_client: redis.Redis
) -> None:
    with committing_sessions() as session:
        env = f.make_environment(session)
        debtor = f.make_debtor(session, env)
        company = f.make_company(session, debtor)
        user = f.make_user(session, env, companies=[company])
        connection = f.make_connection(session, user, f.make_app(session),
                                       companies=[company])
        revoked = f.make_connection(session, user, f.make_app(session), companies=[company],
                                    status=ConnectionStatus.REVOKED)
        session.commit()

    document = _json(invoke("directory", "user", "set", user.email, "--inactive", "--json"))
    assert document["user"]["active"] is False
    assert document["connections"]["suspended"] == 1
    assert redis_client.get(status_key(Subject.CONNECTION, connection.id)) == INACTIVE
    assert redis_client.get(status_key(Subject.USER, user.id)) == INACTIVE
    with committing_sessions() as session:
        row = session.get(Connection, connection.id)
        assert row.status == ConnectionStatus.SUSPENDED
        assert row.suspended_reason == "user_deactivated"
        assert session.get(Connection, revoked.id).status == ConnectionStatus.REVOKED

    # A template that may not consent keeps it suspended; the old template resumes it.
    again = _json(invoke("directory", "user", "set", str(user.id), "--active", "--template",
                         "employee", "--debtor", str(debtor.id), "--json"))
    assert again["user"]["template"] == "employee" and again["user"]["active"] is True
    with committing_sessions() as session:
        assert session.get(Connection, connection.id).suspended_reason in {
            "user_may_not_consent", None}
    back = _json(invoke("directory", "user", "set", str(user.id), "--template", "company",
                        "--company", str(company.id), "--json"))
    assert back["connections"]["resumed"] == 1
    with committing_sessions() as session:
        assert session.get(Connection, connection.id).status == ConnectionStatus.ACTIVE
        assert session.get(Connection, revoked.id).status == ConnectionStatus.REVOKED
