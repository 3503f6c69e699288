"""The demo environment (docs/product.md section 8): one user per template, two debtors with two
companies each, employees (shared/demo/seed.py fills it), and a first-party client bound
to the environment.

Seeding is idempotent: rows are found by their derived emails, numbers and client id,
so running it again adds nothing twice; it resets the passwords and the client secret
to fresh values, which it returns (the only time they can be read).
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from cli import demo_data as names
from cli.output import CliError
from shared.db import utcnow
from shared.demo import data
from shared.demo.seed import seed_environment
from shared.models import App, AppStatus, Environment, User, UserTemplate
from shared.policy.resolve import app_by_client_id
from shared.scopes import FIRST_PARTY_APP_SCOPES
from shared.vault import KeyRing, TokenKind, new_token, token_digest

DEFAULT_EMPLOYEES = 5
REDIRECT_URI = "http://127.0.0.1:8080/callback"
AUTH_METHOD = "client_secret_basic"
GRANT_TYPES = ["authorization_code", "refresh_token", "client_credentials"]


def seed_demo(
    session: Session, keyring: KeyRing, name: str, employees: int = DEFAULT_EMPLOYEES
) -> dict[str, Any]:
    """Create or refresh the demo environment `name`; returns what an operator needs.

    The caller owns the transaction. The returned passwords and client secret are the
    new ones; the database keeps only their hash and digest.
    """
    if employees < 1:
        raise CliError("the demo needs at least one employee per company")
    slug = names.slug_for(name)
    domain = names.demo_domain(slug)
    environment = _environment(session, domain, name)
    seeded = seed_environment(session, environment, domain, employees)
    return {
        "environment": {"id": str(environment.id), "name": environment.name},
        **seeded,
        "first_party_client": _first_party_client(session, keyring, slug, environment),
    }


def _environment(session: Session, domain: str, name: str) -> Environment:
    emails = [data.user_email(t, domain) for t in UserTemplate]
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


def _first_party_client(
    session: Session, keyring: KeyRing, slug: str, environment: Environment
) -> dict[str, str]:
    """The demo environment's own frontend: a first-party client bound to it."""
    client_id = names.client_id_for(slug)
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
