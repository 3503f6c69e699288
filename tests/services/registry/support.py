"""What the registry's tests share: the `world`'s tokens and rows, and the scene of the
end-to-end tests that run the registry and sync on the run's auth server (its database
and Redis, seeded once for the whole run)."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from shared.config import Settings
from shared.models import Environment, UserTemplate
from tests.fixtures.auth_server import APP_SCOPES, AuthServer, Client, new_client
from tests.fixtures.factories import make_company, make_debtor, make_environment
from tests.services.auth.conftest import Tree, create_user
from tests.services.auth.support import AuthRequest, Browser, obtain_tokens, post_form
from tests.services.registry.conftest import World, bearer

DAY = timedelta(days=1)
# A first-party frontend of the environment: the user's and the accountant's side.
FRONTEND_SCOPES = ("openid", "connections.read", "connections.manage",
                   "environment.connections.read", "environment.connections.manage")
# What a partner app asks of a user in the consent-lifetime and scope-usage tests.
PARTNER_SCOPE = "company.info.read employee.absence.read offline_access"

# Loopback addresses for browsers on the auth server: the server (and its per-address
# limits) is the run's, so no two tests send from one. 127.90.0.0 up: no other test
# module's range (tests/services/auth/conftest.py counts from 127.10.0.0).
_addresses = (f"127.{90 + n // 250}.{n % 250 + 1}.1" for n in itertools.count())


# --- the world (tests/services/registry/conftest.py) ----------------------------------------

def accountant(world: World, tenant: Any = None, scope: str | None = None) -> dict[str, str]:
    """The Authorization header of the accountant of `tenant` (default: tenant A)."""
    tenant = tenant or world.a
    user = tenant.users["accountant"]
    return bearer(world.user_token(user, scope) if scope else world.user_token(user))


def set_columns(world: World, model: Any, ident: Any, **values: Any) -> None:
    """Change columns of one committed row."""
    with world.sessions() as session:
        row = session.get(model, ident)
        for name, value in values.items():
            setattr(row, name, value)
        session.add(row)
        session.commit()


# --- the run's auth server -------------------------------------------------------------

def registry_settings(settings: Settings, server: AuthServer) -> Settings:
    """The run's settings on the auth server's database, Redis and issuer: for a registry
    or sync app (or a runtime) beside it."""
    return settings.model_copy(update={
        "database_url": server.engine.url.render_as_string(hide_password=False),
        "redis_url": server.redis_url, "issuer": server.url,
    })


def fresh_address() -> str:
    """A loopback address that no other test sends from."""
    return next(_addresses)


def new_tree(server: AuthServer) -> Tree:
    """An environment of the test alone (its policy and links touch no other test's), one
    debtor, two companies."""
    with server.sessions() as session, session.begin():
        environment = make_environment(session)
        debtor = make_debtor(session, environment)
        companies = [make_company(session, debtor) for _ in range(2)]
        return Tree(str(environment.id), [(str(debtor.id), [str(c.id) for c in companies])])


def bearer_of(tokens: dict[str, Any]) -> dict[str, str]:
    """The Authorization header of a token response's access token."""
    return bearer(tokens["access_token"])


def client_credentials(server: AuthServer, client: Client) -> dict[str, str]:
    """The Authorization header of a client-credentials token of `client`."""
    response = post_form(server, "/token", client, {"grant_type": "client_credentials"})
    assert response.status_code == 200, response.text
    return bearer(response.json()["access_token"])


@dataclass
class ConsentScene:
    """A new environment on the run's auth server with a master client login (`user`,
    its Manage apps token `mine`), an accountant's token (`books`, both through the
    environment's first-party frontend) and a partner app with every data scope the
    tests ask for; `agent` is the user's browser, `reg` the settings of a registry and
    sync on that server."""

    user: Any
    partner_app: Client
    agent: Browser
    reg: Settings
    mine: dict[str, str]
    books: dict[str, str]


@contextmanager
def consent_scene(server: AuthServer, settings: Settings, app_name: str
                  ) -> Iterator[ConsentScene]:
    """The scene of the consent-lifetime and scope-usage end-to-end tests; its browsers
    are closed afterwards."""
    tree = new_tree(server)
    user = create_user(server, tree, UserTemplate.MASTER_CLIENT)
    books_user = create_user(server, tree, UserTemplate.ACCOUNTANT)
    with server.sessions() as session, session.begin():
        environment = session.get(Environment, uuid.UUID(tree.environment_id))
        partner_app = new_client(session, server.keyring, name=app_name,
                                 scopes=(*APP_SCOPES, "employee.absence.read"))
        frontend = new_client(session, server.keyring, first_party=True,
                              environment=environment, publisher="Koppel",
                              scopes=FRONTEND_SCOPES)
    agent = Browser(server, fresh_address())
    books_agent = Browser(server, fresh_address())
    try:
        mine = bearer_of(obtain_tokens(server, agent, AuthRequest(
            frontend, scope="openid connections.read connections.manage"), user))
        books = bearer_of(obtain_tokens(server, books_agent, AuthRequest(
            frontend, scope="openid environment.connections.read "
                            "environment.connections.manage"), books_user))
        yield ConsentScene(user, partner_app, agent, registry_settings(settings, server),
                           mine, books)
    finally:
        agent.close()
        books_agent.close()
