"""A FAPI 2.0 partner app (pushed authorization requests, private_key_jwt, DPoP-bound
tokens) as openid-client 6 drives it against auth and sync on real sockets, and one
DPoP-bound client-credentials grant through oauth4webapi 3's own functions. The client
assertion key is ES256, PS256 or Ed25519 (openid-client derives the assertion's `alg`
from the key)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from joserfc.jwk import ECKey, OKPKey, RSAKey

from tests.clients.harness import NodeApp, NodeAppError
from tests.clients.test_certified_clients import OIDC_SCOPE, demo_tree, link, new_app
from tests.fixtures.auth_server import CALLBACK, Client
from tests.fixtures.stack import Stack
from tests.services.auth.conftest import create_user
from tests.services.auth.support import Browser, verified_jwt

ASSERTION_KEYS: dict[str, Callable[[], Any]] = {
    "ES256": lambda: ECKey.generate_key("P-256", auto_kid=True),
    "PS256": lambda: RSAKey.generate_key(2048, auto_kid=True),
    "Ed25519": lambda: OKPKey.generate_key("Ed25519", auto_kid=True),
}


def fapi_app(stack: Stack, node_app: NodeApp, key_alg: str) -> tuple[Client, Any, str]:
    """A FAPI 2.0 client with a private_key_jwt key of `key_alg`, configured in the Node
    app with a DPoP key of its own; returns the client, its key and the DPoP key's
    thumbprint."""
    key = ASSERTION_KEYS[key_alg]()
    client = new_app(stack, auth_method="private_key_jwt",
                     jwks={"keys": [key.as_dict(private=False)]},
                     require_pushed_authorization_requests=True,
                     dpop_bound_access_tokens=True,
                     grant_types=["authorization_code", "refresh_token"])
    return client, key, configure(stack, node_app, client, key)


def configure(stack: Stack, node_app: NodeApp, client: Client, key: Any) -> str:
    """Discovery and private_key_jwt with `key`, and a fresh ES256 DPoP key pair; returns
    that key's thumbprint."""
    configured = node_app.call("configure", issuer=stack.auth.url, client_id=client.client_id,
                               auth="private_key_jwt", private_jwk=key.as_dict(private=True),
                               dpop_alg="ES256")
    jkt: str = configured["dpop_jkt"]
    return jkt


def employees_url(stack: Stack) -> str:
    return f"{stack.sync_url}/v1/companies/{demo_tree(stack).debtors[0][1][0]}/employees"


@pytest.mark.parametrize("key_alg", list(ASSERTION_KEYS))
def test_fapi2_flow_with_par_private_key_jwt_and_dpop(
    stack: Stack, node_app: NodeApp, key_alg: str,
) -> None:
    _, _, jkt = fapi_app(stack, node_app, key_alg)
    user = create_user(stack.auth, demo_tree(stack))
    agent = Browser(stack.auth)
    try:
        # openid-client sends a DPoP proof with the pushed request: /par binds the code
        # to that key (RFC 9449 section 10.1); dpop_jkt naming it too must agree.
        url = node_app.call("authorize", scope=OIDC_SCOPE, redirect_uri=CALLBACK, par=True,
                            extra={"dpop_jkt": jkt})["url"]
        assert "request_uri=" in url and "redirect_uri" not in url
        tokens = node_app.call("callback", url=link(stack, agent, url, user, CALLBACK))
    finally:
        agent.close()
    assert tokens["token_type"].lower() == "dpop"
    assert tokens["grant_id"]
    assert tokens["id_token_claims"]["sub"] == user.id
    _, claims = verified_jwt(stack.auth, tokens["access_token"], "ES256")
    assert claims["cnf"] == {"jkt": jkt}

    sync = employees_url(stack)
    employees = node_app.call("fetch", url=sync)
    assert employees["status"] == 200, employees
    assert employees["body"]["data"]
    as_bearer = httpx.get(sync, headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert as_bearer.status_code == 401, as_bearer.text

    # FAPI 2.0: refresh tokens are not rotated; the first one keeps working.
    refreshed = node_app.call("refresh")
    assert refreshed["refresh_token"] == tokens["refresh_token"]
    assert refreshed["access_token"] != tokens["access_token"]
    assert refreshed["token_type"].lower() == "dpop"
    assert refreshed["grant_id"] == tokens["grant_id"]
    again = node_app.call("refresh", refresh_token=tokens["refresh_token"])
    _, claims = verified_jwt(stack.auth, again["access_token"], "ES256")
    assert claims["cnf"] == {"jkt": jkt}
    assert node_app.call("fetch", url=sync)["status"] == 200


def test_a_fapi_client_without_par_gets_invalid_request_at_the_redirect(
    stack: Stack, node_app: NodeApp,
) -> None:
    fapi_app(stack, node_app, "ES256")
    agent = Browser(stack.auth)
    try:
        url = node_app.call("authorize", scope=OIDC_SCOPE, redirect_uri=CALLBACK)["url"]
        answer = agent.http.get(url)
    finally:
        agent.close()
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    assert location.startswith(f"{CALLBACK}?")
    with pytest.raises(NodeAppError) as refused:
        node_app.call("callback", url=location)
    assert refused.value.error["error"] == "invalid_request"


def test_client_credentials_with_dpop_through_oauth4webapi(
    stack: Stack, node_app: NodeApp,
) -> None:
    client = new_app(stack)
    grant = node_app.call("oauth4webapi_client_credentials", issuer=stack.auth.url,
                          client_id=client.client_id, client_secret=client.secret,
                          scope="webhooks.manage", dpop_alg="ES256")
    assert grant["token_type"].lower() == "dpop"
    _, claims = verified_jwt(stack.auth, grant["access_token"], "ES256")
    assert claims["cnf"] == {"jkt": grant["dpop_jkt"]}
    assert claims["client_id"] == client.client_id and claims["scope"] == "webhooks.manage"


@pytest.mark.parametrize("named", [True, False], ids=["dpop_jkt", "proof_only"])
def test_the_code_is_bound_to_the_dpop_key_of_the_pushed_request(
    stack: Stack, node_app: NodeApp, named: bool,
) -> None:
    """RFC 9449 sections 10 and 10.1: a code pushed with `dpop_jkt`, or with only the
    DPoP proof the library sends to /par, is redeemed with that key only; an app that
    lost the key (here: a fresh DPoP key pair) cannot exchange it."""
    client, key, jkt = fapi_app(stack, node_app, "ES256")
    user = create_user(stack.auth, demo_tree(stack))
    agent = Browser(stack.auth)
    try:
        url = node_app.call("authorize", scope=OIDC_SCOPE, redirect_uri=CALLBACK, par=True,
                            extra={"dpop_jkt": jkt} if named else {})["url"]
        location = link(stack, agent, url, user, CALLBACK)
    finally:
        agent.close()
    assert configure(stack, node_app, client, key) != jkt
    with pytest.raises(NodeAppError) as refused:
        node_app.call("callback", url=location)
    assert refused.value.error["status"] == 400
    assert refused.value.error["error"] == "invalid_grant", refused.value.error
