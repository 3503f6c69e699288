"""The registry with its lifespan running, a world of two environments, and tokens.

The app reads through its own sessions, so the rows it must see are committed
(`committing_sessions` empties every table after each test).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from services.registry.app import create_app
from shared.config import Settings
from shared.models import (
    App,
    Company,
    Connection,
    Debtor,
    Environment,
    Partner,
    TokenFamily,
    User,
)
from shared.models import UserTemplate as T
from shared.signing import Signer
from shared.vault import KeyRing, SecretBox, TokenKind, new_token, token_digest
from tests.fixtures import factories as f
from tests.services.conftest import running

ALL_FIRST_PARTY = ("connections.read connections.manage environment.connections.read "
                   "environment.connections.manage directory.manage")


@dataclass
class Tenant:
    environment: Environment
    debtors: list[Debtor]
    companies: list[Company]
    users: dict[str, User]
    connections: list[Connection] = field(default_factory=list)
    families: dict[Any, TokenFamily] = field(default_factory=dict)


@dataclass
class World:
    sessions: sessionmaker[Session]
    signer: Signer
    settings: Settings
    first_party: App
    apps: list[App]
    a: Tenant
    b: Tenant

    def _sign(self, claims: dict[str, Any]) -> str:
        now = int(time.time())
        base = {"iss": self.settings.issuer, "aud": self.settings.api_audience, "iat": now,
                "exp": now + 900}
        with self.sessions() as session:
            token = self.signer.sign(session, {**base, **claims}, alg="ES256", typ="at+jwt")
            session.commit()
        return token

    def user_token(self, user: User, scope: str = ALL_FIRST_PARTY) -> str:
        """A first-party token of `user` (a token family is made for it)."""
        with self.sessions() as session:
            family = f.make_token_family(session, self.first_party, user)
            session.commit()
        return self._sign({
            "sub": str(user.id), "client_id": self.first_party.client_id, "scope": scope,
            "environment_id": str(user.environment_id),
            "jti": f"{family.id}.{secrets.token_urlsafe(8)}",
        })

    def app_token(self, app: App, scope: str = "") -> str:
        """A client-credentials token of `app`."""
        return self._sign({"sub": app.client_id, "client_id": app.client_id, "scope": scope,
                           "jti": secrets.token_urlsafe(12)})

    def connection_token(self, connection: Connection) -> str:
        """A third-party token of the connection (with a token family of its own)."""
        with self.sessions() as session:
            app = session.get(App, connection.app_id)
            user = session.get(User, connection.user_id)
            family = f.make_token_family(session, app, user, connection_id=connection.id)
            session.commit()
        return self._sign({
            "sub": str(connection.user_id), "client_id": app.client_id,
            "scope": " ".join(connection.scopes), "environment_id": str(connection.environment_id),
            "connection_id": str(connection.id), "debtor_id": str(connection.debtor_id),
            "jti": f"{family.id}.{secrets.token_urlsafe(8)}",
        })


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _tenant(session: Session, apps: list[App]) -> Tenant:
    env = f.make_environment(session)
    debtors = [f.make_debtor(session, env) for _ in range(2)]
    companies = [f.make_company(session, d) for d in debtors for _ in range(2)]
    users = {
        "accountant": f.make_user(session, env, template=T.ACCOUNTANT),
        "master_client": f.make_user(session, env, template=T.MASTER_CLIENT, debtor=debtors[0]),
        "company": f.make_user(session, env, template=T.COMPANY, companies=companies[:1]),
        "hr_manager": f.make_user(session, env, template=T.HR_MANAGER, companies=companies[:2]),
        "employee": f.make_user(session, env, template=T.EMPLOYEE, debtor=debtors[0]),
    }
    tenant = Tenant(env, debtors, companies, users)
    for app in apps:
        tenant.connections.append(
            f.make_connection(session, users["master_client"], app, companies=companies[:2]))
    tenant.connections.append(
        f.make_connection(session, users["company"], apps[0], companies=companies[:1],
                          scopes=["company.info.read", "employee.payment.read"]))
    for connection in tenant.connections:
        app = next(a for a in apps if a.id == connection.app_id)
        user = session.get(User, connection.user_id)
        tenant.families[connection.id] = f.make_token_family(session, app, user,
                                                             connection_id=connection.id)
    return tenant


@pytest.fixture
def world(committing_sessions: sessionmaker[Session], keyring: KeyRing, settings: Settings,
          redis_client: redis.Redis) -> World:
    """Two environments, A and B, each with two debtors, five users and connections of
    the master client to both partner apps and of the company login to the first."""
    with committing_sessions() as session:
        # The platform's own backend: it provisions environments and logs in users of both.
        first_party = f.make_app(session, first_party=True, platform=True, grant_types=[
            "authorization_code", "refresh_token", "client_credentials"])
        apps = [f.make_app(session, name=name, publisher=f"{name} B.V.",
                           grant_types=["authorization_code", "client_credentials"])
                for name in ("Plan It", "Roster")]
        a, b = _tenant(session, apps), _tenant(session, apps)
        session.commit()
    return World(committing_sessions, Signer(SecretBox(keyring)), settings, first_party, apps,
                 a, b)


@pytest.fixture
def initial_token(world: World, keyring: KeyRing) -> str:
    """The initial access token of a partner "Planner Co" (RFC 7591 registration)."""
    token = new_token(TokenKind.INITIAL_ACCESS_TOKEN)
    with world.sessions() as session:
        session.add(Partner(name="Planner Co",
                            initial_access_token_digest=token_digest(keyring.digest_key, token)))
        session.commit()
    return token


@pytest.fixture
async def client(settings: Settings, world: World) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the registry (lifespan running)."""
    async with running(create_app(settings)) as client:
        yield client
