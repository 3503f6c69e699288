"""The example partner app (examples/partner_app) against the real Koppel services and
worker: a user links it through the consent page, it syncs the employees it may read,
follows a change through the webhook and the change feed, keeps its tokens encrypted,
and forgets everything of the connection once the user revokes it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlmodel import select

from examples.partner_app.app import create_app
from examples.partner_app.settings import Settings as PartnerSettings
from examples.partner_app.store import Store
from shared.models import AuthorizationCode, Employee
from tests.fixtures.auth_server import listening_socket, new_client, serve_in_process
from tests.fixtures.stack import Stack
from tests.services.auth.conftest import Tree, create_user
from tests.services.auth.support import AuthRequest, Browser, User, obtain_tokens

WAIT_S = 60.0


def wait_for(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {WAIT_S} s")


@pytest.fixture
def partner_app(stack: Stack, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The example app on a real socket, registered at Koppel; yields its URL and data dir."""
    sock = listening_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with stack.auth.sessions() as session, session.begin():
        client = new_client(
            session, stack.auth.keyring, redirect_uris=(f"{url}/callback",),
            scopes=("company.info.read", "employee.info.read", "offline_access"),
            grant_types=["authorization_code", "refresh_token", "client_credentials"],
            name="Example Partner App")
    assert client.secret is not None
    settings = PartnerSettings(issuer=stack.auth.url, api_url=stack.sync_url,
                               client_id=client.client_id, client_secret=client.secret,
                               base_url=url, data_dir=tmp_path / "partner", poll_seconds=1.0)
    with serve_in_process(create_app(settings), sock, "warning"):
        yield url, settings.data_dir


def first_party_token(stack: Stack, agent: Browser, user: User, scope: str) -> str:
    """What the SaaS's own frontend holds for `user` (the user is logged in already)."""
    request = AuthRequest(stack.auth.clients["first_party"], scope=scope)
    return str(obtain_tokens(stack.auth, agent, request, user)["access_token"])


def test_the_example_partner_app_links_syncs_follows_changes_and_stops_on_revoke(
    stack: Stack, partner_app: tuple[str, Path],
) -> None:
    url, data_dir = partner_app
    demo = stack.auth.demo
    tree = Tree(demo["environment"]["id"],
                [(d["id"], [c["id"] for c in d["companies"]]) for d in demo["debtors"]])
    company_id = tree.debtors[0][1][0]
    user = create_user(stack.auth, tree)  # an HR manager of that company
    with stack.auth.sessions() as session:
        expected = {str(e.id) for e in session.exec(
            select(Employee).where(Employee.company_id == uuid.UUID(company_id)))}
    assert expected

    agent = Browser(stack.auth)
    try:
        # Link: the app sends the browser to Koppel; the user logs in and consents.
        start = agent.http.get(f"{url}/link")
        assert start.status_code == 303
        # The request was pushed first (PAR): the browser carries only its URI.
        pushed = parse_qs(urlsplit(start.headers["location"]).query)
        assert set(pushed) == {"client_id", "request_uri"}
        linked = agent.walk(agent.http.get(start.headers["location"]), f"{url}/callback", user)
        assert linked.pages == ["login", "consent"]
        done = agent.http.get(linked.location)
        assert done.status_code == 200 and done.text.startswith("Linked: connection "), done.text
        connection_id = done.text.removeprefix("Linked: connection ")
        with stack.auth.sessions() as session:
            # The code was bound to the app's DPoP key (dpop_jkt), so its tokens are too.
            code = session.exec(select(AuthorizationCode).where(
                AuthorizationCode.connection_id == uuid.UUID(connection_id))).one()
            assert code.dpop_jkt is not None

        def state() -> dict[str, Any]:
            return httpx.get(f"{url}/").json()

        synced = wait_for(lambda: state()["employees"], "the first sync")
        assert {e["id"] for e in synced} == expected
        assert state()["connections"] == [connection_id]

        # Tokens are kept encrypted: nothing of them is in the app's files in the clear.
        # (Not a search for `eyJ`: the ciphertext is base64url, which holds any three
        # letters now and then; the tokens themselves and the JSON key never appear.)
        stored = b"".join(p.read_bytes() for p in data_dir.iterdir() if p.is_file())
        kept = Store(data_dir)
        try:
            clear = kept.token(connection_id)
        finally:
            kept.close()
        assert clear is not None and clear["access_token"] and clear["refresh_token"]
        assert b'"refresh_token"' not in stored
        assert clear["access_token"].encode() not in stored
        assert clear["refresh_token"].encode() not in stored

        # The access token runs out: the app refreshes (with a DPoP proof) on its next call.
        store = Store(data_dir)
        try:
            before = store.token(connection_id)
            assert before is not None and before["token_type"] == "DPoP"
            store.save_token(connection_id, {**before, "expires_at": 0})
        finally:
            store.close()

        # An HR manager renames an employee in the SaaS: the webhook wakes the app and
        # the change feed brings the new name.
        employee_id = sorted(expected)[0]
        hr_token = first_party_token(stack, agent, user, "employee.info")
        renamed = httpx.patch(f"{stack.sync_url}/v1/employees/{employee_id}",
                              json={"last_name": "Jansen-Example"},
                              headers={"Authorization": f"Bearer {hr_token}"})
        assert renamed.status_code == 200, renamed.text
        wait_for(lambda: any(e["last_name"] == "Jansen-Example" for e in state()["employees"]),
                 "the change to arrive through webhook and feed")
        store = Store(data_dir)
        try:
            after = store.token(connection_id)
        finally:
            store.close()
        assert after is not None and after["refresh_token"] != before["refresh_token"]
        assert after["token_type"] == "DPoP" and after["expires_at"] > time.time()

        # The user revokes the app in Manage apps: the app forgets the connection at once.
        manage = first_party_token(stack, agent, user, "connections.manage")
        revoked = httpx.delete(f"{stack.registry_url}/v1/me/connections/{connection_id}",
                               headers={"Authorization": f"Bearer {manage}"})
        assert revoked.status_code in (200, 204), revoked.text
        wait_for(lambda: state() == {"connections": [], "employees": []},
                 "the app to stop on connection.revoked")
    finally:
        agent.close()
