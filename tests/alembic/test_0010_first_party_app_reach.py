"""Migration 0010's data step: the demo's first-party client is bound to its demo
environment, every other first-party app is suspended (never platform-wide), and each
decision is printed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.exc import IntegrityError

from shared.db.engine import create_sync_engine
from tests.fixtures.database import alembic_config, fresh_database, migrate

NOW = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def engine_at_0009(tmp_path: Path) -> Iterator[tuple[str, sa.Engine]]:
    with fresh_database(tmp_path) as url:
        migrate(url, "0009")
        engine = create_sync_engine(url)
        try:
            yield url, engine
        finally:
            engine.dispose()


def _environment(conn: sa.Connection, name: str) -> uuid.UUID:
    ident = uuid.uuid4()
    conn.execute(sa.text("INSERT INTO environments (id, name, created_at, updated_at) "
                         "VALUES (:id, :name, :now, :now)"),
                 {"id": ident.hex if conn.dialect.name == "sqlite" else ident, "name": name,
                  "now": NOW})
    return ident


def _user(conn: sa.Connection, environment_id: uuid.UUID, email: str) -> None:
    ident = uuid.uuid4()
    sqlite = conn.dialect.name == "sqlite"
    conn.execute(sa.text(
        "INSERT INTO users (id, environment_id, email, name, password_hash, template, active, "
        "created_at, updated_at) VALUES (:id, :env, :email, 'x', 'x', 'accountant', true, "
        ":now, :now)"),
        {"id": ident.hex if sqlite else ident,
         "env": environment_id.hex if sqlite else environment_id, "email": email, "now": NOW})


def _app(conn: sa.Connection, client_id: str, *, first_party: bool) -> None:
    ident = uuid.uuid4()
    conn.execute(sa.text(
        "INSERT INTO apps (id, client_id, first_party, name, contacts, redirect_uris, scopes, "
        "grant_types, response_types, token_endpoint_auth_method, status, created_at, "
        "updated_at) VALUES (:id, :client_id, :fp, :client_id, '[]', '[]', '[]', '[]', '[]', "
        "'client_secret_basic', 'active', :now, :now)"),
        {"id": ident.hex if conn.dialect.name == "sqlite" else ident, "client_id": client_id,
         "fp": first_party, "now": NOW})


def _apps(engine: sa.Engine) -> dict[str, tuple]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT client_id, environment_id, platform, status FROM apps")).all()
    return {r[0]: (None if r[1] is None else uuid.UUID(str(r[1])), bool(r[2]), r[3])
            for r in rows}


def test_the_demo_client_is_bound_and_other_first_party_apps_are_suspended(
    engine_at_0009: tuple[str, sa.Engine], capfd: pytest.CaptureFixture[str],
) -> None:
    url, engine = engine_at_0009
    with engine.begin() as conn:
        acme = _environment(conn, "Acme")
        other = _environment(conn, "Other")
        for template in ("accountant", "employee"):
            _user(conn, acme, f"{template}@acme.koppel.test")
        # Demo-looking logins spread over two environments prove nothing.
        _user(conn, acme, "accountant@split.koppel.test")
        _user(conn, other, "employee@split.koppel.test")
        _app(conn, "koppel-web-acme", first_party=True)
        _app(conn, "koppel-web-split", first_party=True)
        _app(conn, "koppel-web-gone", first_party=True)  # its demo logins were deleted
        _app(conn, "saas-backend", first_party=True)
        _app(conn, "kp_partner", first_party=False)

    migrate(url, "0010")

    assert _apps(engine) == {
        "koppel-web-acme": (acme, False, "active"),
        "koppel-web-split": (None, False, "suspended"),
        "koppel-web-gone": (None, False, "suspended"),
        "saas-backend": (None, False, "suspended"),
        "kp_partner": (None, False, "active"),
    }
    printed = capfd.readouterr().err
    assert f"app koppel-web-acme: bound to its demo environment {acme}" in printed
    for client_id in ("koppel-web-split", "koppel-web-gone", "saas-backend"):
        assert f"app {client_id}: suspended (was active)" in printed
        assert f"koppel app make-platform {client_id}" in printed
    assert "kp_partner" not in printed


def test_the_constraints_keep_first_party_apps_placed(
    engine_at_0009: tuple[str, sa.Engine],
) -> None:
    url, engine = engine_at_0009
    with engine.begin() as conn:
        env = _environment(conn, "Acme")
        _app(conn, "saas-backend", first_party=True)
        _app(conn, "kp_partner", first_party=False)
    migrate(url, "0010")
    env_value = env.hex if engine.dialect.name == "sqlite" else env
    refused = [
        # platform-wide and bound at once
        ("UPDATE apps SET platform = true, environment_id = :env, status = 'active' "
         "WHERE client_id = 'saas-backend'"),
        # an unplaced first-party app that is active
        "UPDATE apps SET status = 'active' WHERE client_id = 'saas-backend'",
        # a third-party app with first-party reach
        "UPDATE apps SET platform = true WHERE client_id = 'kp_partner'",
        "UPDATE apps SET environment_id = :env WHERE client_id = 'kp_partner'",
    ]
    for statement in refused:
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(sa.text(statement), {"env": env_value})
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE apps SET platform = true, status = 'active' "
                             "WHERE client_id = 'saas-backend'"))
    assert _apps(engine)["saas-backend"] == (None, True, "active")
    command.downgrade(alembic_config(url), "0009")
    with engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("apps")}
    assert not {"environment_id", "platform"} & columns
