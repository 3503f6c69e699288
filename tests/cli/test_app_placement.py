"""`koppel app create-platform|bind|make-platform`: placing the SaaS's first-party apps."""

from __future__ import annotations

import json
import uuid

import pytest
import redis
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, select

from cli.demo import seed_demo
from cli.output import CliError
from shared.models import App, AppStatus
from shared.scopes import FIRST_PARTY_APP_SCOPES, FIRST_PARTY_SCOPES
from shared.status import Subject, status_key
from shared.vault import KeyRing, digest_matches
from tests.cli.conftest import Invoke, Koppel
from tests.fixtures import factories as f


def _app(sessions: sessionmaker[Session], client_id: str) -> App:
    with sessions() as session:
        return session.exec(select(App).where(App.client_id == client_id)).one()


def test_create_platform_prints_the_secret_once_and_stores_its_digest(
    koppel: Koppel, committing_sessions: sessionmaker[Session], keyring: KeyRing,
) -> None:
    result = koppel("app", "create-platform", "SaaS Backend", "--json",
                    "--redirect-uri", "https://app.koppel.example/callback")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["client_id"] == "koppel-platform-saas-backend"
    assert document["platform"] is True
    app = _app(committing_sessions, document["client_id"])
    assert app.first_party and app.platform and app.environment_id is None
    assert app.status == AppStatus.ACTIVE
    assert app.token_endpoint_auth_method == "client_secret_basic"
    assert set(app.grant_types) == {"client_credentials", "authorization_code", "refresh_token"}
    assert set(app.scopes) == set(FIRST_PARTY_APP_SCOPES) >= FIRST_PARTY_SCOPES
    assert app.redirect_uris == ["https://app.koppel.example/callback"]
    assert digest_matches(keyring.digest_key, document["client_secret"], app.client_secret_digest)
    assert document["client_secret"] not in {str(value) for value in vars(app).values()}

    again = koppel("app", "create-platform", "SaaS Backend", "--json")
    assert again.returncode == 2 and "exists" in again.stderr
    bad_uri = koppel("app", "create-platform", "Other", "--redirect-uri", "http://evil.example/")
    assert bad_uri.returncode == 2 and "https" in bad_uri.stderr


@pytest.mark.parametrize("command", ["bind", "make-platform"])
def test_placing_an_app_the_migration_suspended_activates_it(
    invoke: Invoke, committing_sessions: sessionmaker[Session], redis_client: redis.Redis,
    command: str,
) -> None:
    with committing_sessions() as session:
        environment = f.make_environment(session)
        app = f.make_app(session, first_party=True, status=AppStatus.SUSPENDED)
        session.commit()
    redis_client.set(status_key(Subject.APP, app.client_id), b"0")
    args = [environment.id.hex] if command == "bind" else []
    result = invoke("app", command, app.client_id, *args, "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["status"] == "active" and document["previous"] == "suspended"
    row = _app(committing_sessions, app.client_id)
    assert row.status == AppStatus.ACTIVE
    if command == "bind":
        assert (row.environment_id, row.platform) == (environment.id, False)
        assert document["environment_id"] == str(environment.id)
    else:
        assert (row.environment_id, row.platform) == (None, True)
    # The cached "suspended" is replaced at once, not when it expires.
    assert redis_client.get(status_key(Subject.APP, app.client_id)) == b"1"
    # Placing it the same way again changes nothing.
    assert invoke("app", command, app.client_id, *args).exit_code == 0


def test_placement_refuses_third_party_apps_moves_and_unknown_ids(
    invoke: Invoke, committing_sessions: sessionmaker[Session],
) -> None:
    with committing_sessions() as session:
        a, b = f.make_environment(session), f.make_environment(session)
        partner_app = f.make_app(session)
        bound = f.make_app(session, first_party=True, environment=a)
        platform = f.make_app(session, first_party=True, platform=True)
        session.commit()
    refusals = {
        ("bind", partner_app.client_id, str(a.id)): "third-party",
        ("make-platform", partner_app.client_id): "third-party",
        ("bind", bound.client_id, str(b.id)): "already bound",
        ("make-platform", bound.client_id): "already bound",
        ("bind", platform.client_id, str(a.id)): "already platform-wide",
        ("bind", bound.client_id, str(uuid.uuid4())): "no environment",
        ("bind", bound.client_id, "not-a-uuid"): "must be an id",
        ("make-platform", "nope"): "no app",
    }
    for args, message in refusals.items():
        result = invoke("app", *args)
        assert result.exit_code == 2, args
        assert message in result.stderr, (args, result.stderr)
    assert _app(committing_sessions, bound.client_id).environment_id == a.id
    assert not _app(committing_sessions, partner_app.client_id).platform
    assert _app(committing_sessions, platform.client_id).environment_id is None


def test_the_demo_client_is_bound_to_its_environment_and_stays_there(
    db_session: Session, keyring: KeyRing,
) -> None:
    document = seed_demo(db_session, keyring, "Bound Demo", employees=1)
    client_id = document["first_party_client"]["client_id"]
    app = db_session.exec(select(App).where(App.client_id == client_id)).one()
    assert app.environment_id == uuid.UUID(document["environment"]["id"])
    assert not app.platform and app.status == AppStatus.ACTIVE
    # An operator made it platform-wide: a re-seed does not narrow it silently.
    app.environment_id, app.platform = None, True
    db_session.add(app)
    db_session.flush()
    with pytest.raises(CliError, match="not bound to this demo environment"):
        seed_demo(db_session, keyring, "Bound Demo", employees=1)
