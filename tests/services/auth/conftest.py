"""Fixtures for the auth service's tests: they all drive the real server (`auth_server`)
over HTTP. The server commits for real, so a test that consents uses its own user (or
its own app): consent is remembered per user x app x debtor."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator, Sequence

import pytest

from shared.models import Company, Debtor, Environment, UserTemplate
from tests.fixtures.auth_server import AuthServer, Client, new_client
from tests.fixtures.factories import DEFAULT_PASSWORD, make_company, make_debtor, make_environment
from tests.fixtures.factories import make_user as factory_user
from tests.services.auth.support import AuthRequest, Browser, Tree, User

SESSION_COOKIE = "koppel_session"

# Distinct loopback source addresses, so that the per-address rate limits of one test
# never count another test's failures.
_addresses = (f"127.{i // 250 + 10}.{i % 250 + 1}.1" for i in itertools.count())


@pytest.fixture(scope="session")
def demo_tree(auth_server: AuthServer) -> Tree:
    demo = auth_server.demo
    return Tree(demo["environment"]["id"],
                [(d["id"], [c["id"] for c in d["companies"]]) for d in demo["debtors"]])


@pytest.fixture
def fresh_address() -> Callable[[], str]:
    """A loopback address that no other test sends from."""
    return lambda: next(_addresses)


@pytest.fixture
def new_tree(auth_server: AuthServer) -> Callable[..., Tree]:
    """A new environment (optionally with its own consent policy), one debtor, two companies."""

    def make(consent_templates: Sequence[str] | None = None) -> Tree:
        with auth_server.sessions() as session, session.begin():
            environment = make_environment(
                session, consent_templates=list(consent_templates) if consent_templates else None
            )
            debtor = make_debtor(session, environment)
            companies = [make_company(session, debtor) for _ in range(2)]
            return Tree(str(environment.id), [(str(debtor.id), [str(c.id) for c in companies])])

    return make


def create_user(server: AuthServer, tree: Tree, template: str = UserTemplate.HR_MANAGER, *,
                debtor: int = 0, companies: Sequence[int] = (0,), active: bool = True) -> User:
    """A new login; by default an HR manager of the first debtor and its first company.
    A master client gets the debtor only (it reaches all its companies); an accountant
    gets neither (it reaches the whole environment)."""
    debtor_id, company_ids = tree.debtors[debtor]
    with server.sessions() as session, session.begin():
        environment = session.get(Environment, uuid.UUID(tree.environment_id))
        if template == UserTemplate.ACCOUNTANT:
            kwargs = {}
        elif template == UserTemplate.MASTER_CLIENT:
            kwargs = {"debtor": session.get(Debtor, uuid.UUID(debtor_id))}
        else:
            kwargs = {"companies": [session.get(Company, uuid.UUID(company_ids[i]))
                                    for i in companies]}
        user = factory_user(session, environment, template=UserTemplate(template),
                            active=active, **kwargs)
        return User(str(user.id), user.email, DEFAULT_PASSWORD, str(template))


@pytest.fixture
def new_user(auth_server: AuthServer, demo_tree: Tree) -> Callable[..., User]:
    """Makes new logins (see `create_user`), in the demo environment unless `tree=`."""

    def make(template: str = UserTemplate.HR_MANAGER, *, tree: Tree | None = None,
             **kwargs) -> User:
        return create_user(auth_server, tree or demo_tree, template, **kwargs)

    return make


@pytest.fixture(scope="session")
def signed_in_user(auth_server: AuthServer, demo_tree: Tree) -> tuple[User, str]:
    """An HR manager who logged in once for the whole run, and the session cookie.

    Logging in costs an argon2 run; tests that only need some logged-in user share this
    one and use an app of their own (`new_app`), which has no consent remembered yet."""
    user = create_user(auth_server, demo_tree)
    agent = Browser(auth_server)
    try:
        agent.log_in(AuthRequest(auth_server.clients["first_party"], scope="openid"), user)
        return user, agent.http.cookies[SESSION_COOKIE]
    finally:
        agent.close()


@pytest.fixture
def new_app(auth_server: AuthServer) -> Callable[..., Client]:
    """A new third-party app (no consent remembered for it yet)."""

    def make(**fields) -> Client:
        with auth_server.sessions() as session, session.begin():
            return new_client(session, auth_server.keyring, **fields)

    return make


@pytest.fixture
def new_first_party(auth_server: AuthServer) -> Callable[..., Client]:
    """A new first-party app: bound to the environment of `tree`, else platform-wide."""

    def make(tree: Tree | None = None, **fields) -> Client:
        with auth_server.sessions() as session, session.begin():
            environment = (session.get(Environment, uuid.UUID(tree.environment_id))
                           if tree is not None else None)
            return new_client(session, auth_server.keyring, first_party=True,
                              environment=environment, platform=tree is None,
                              **{"publisher": "Koppel", **fields})

    return make


@pytest.fixture
def browser(
    auth_server: AuthServer, signed_in_user: tuple[User, str]
) -> Iterator[Callable[..., Browser]]:
    """Makes browsers (each with its own cookies), closed after the test. Each sends from
    a loopback address of its own unless given `source`, so a failed login in one test
    never counts towards another's per-address limit. `signed_in=True` gives one with the
    session of `signed_in_user`."""
    opened: list[Browser] = []

    def make(source: str | None = None, *, signed_in: bool = False) -> Browser:
        agent = Browser(auth_server, source or next(_addresses))
        if signed_in:
            agent.http.cookies.set(SESSION_COOKIE, signed_in_user[1])
        opened.append(agent)
        return agent

    yield make
    for agent in opened:
        agent.close()
