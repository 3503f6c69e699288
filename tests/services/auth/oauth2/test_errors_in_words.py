"""What certified client libraries ran into (issue 15, part 4), fixed: client
authentication failures and refused grants and scopes say what was wrong in words, the
Basic challenge goes only to clients that used HTTP Basic, discovery lists what a partner
can ask for, and introspection needs an authenticated client."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import httpx
import pytest

from shared.scopes import CONSENT_SCOPES
from tests.fixtures.auth_server import AuthServer, Client
from tests.services.auth.oauth2.test_authorize import app_error
from tests.services.auth.support import (
    AuthRequest,
    Browser,
    callback_params,
    obtain_tokens,
    post_form,
    refresh,
)

WRONG = "kps_" + "w" * 43


def _failure(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["error"] == "invalid_client"
    assert "[" not in body["error_description"], body  # no Python list
    return body["error_description"]


def test_client_authentication_failures_say_what_was_wrong(
    auth_server: AuthServer, new_app: Callable[..., Client], fresh_address: Callable[[], str],
) -> None:
    form = {"grant_type": "client_credentials", "scope": "webhooks.manage"}
    basic = new_app(auth_method="client_secret_basic")
    post = new_app(auth_method="client_secret_post")

    wrong_basic = post_form(auth_server, "/token", replace(basic, secret=WRONG), form,
                            source=fresh_address())
    assert _failure(wrong_basic) == "the client secret is not correct"
    assert wrong_basic.headers["www-authenticate"].startswith("Basic ")

    wrong_post = post_form(auth_server, "/token", replace(post, secret=WRONG), form,
                           source=fresh_address())
    assert _failure(wrong_post) == "the client secret is not correct"
    assert "www-authenticate" not in wrong_post.headers  # it did not use Basic

    unknown = post_form(auth_server, "/token", replace(post, client_id="kp_nobody"), form,
                        source=fresh_address())
    assert _failure(unknown) == "unknown client"
    unknown_basic = post_form(auth_server, "/token", replace(basic, client_id="kp_nobody"),
                              form, source=fresh_address())
    assert _failure(unknown_basic) == "unknown client"
    assert unknown_basic.headers["www-authenticate"].startswith("Basic ")

    # The right secret sent with a method the client did not register.
    other_method = post_form(auth_server, "/token",
                             replace(basic, auth_method="client_secret_post"), form,
                             source=fresh_address())
    assert _failure(other_method) == (
        "this client authenticates with client_secret_basic, not client_secret_post")

    with httpx.Client(transport=httpx.HTTPTransport(local_address=fresh_address())) as http:
        nothing = http.post(f"{auth_server.url}/token", data=form)
    assert _failure(nothing).startswith("no client authentication")
    assert "www-authenticate" not in nothing.headers


def test_introspection_needs_an_authenticated_client(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    public = new_app(auth_method="none")
    tokens = obtain_tokens(auth_server, browser(signed_in=True),
                           AuthRequest(public, scope="employee.info.read"), None)
    answer = post_form(auth_server, "/introspect", public, {"token": tokens["access_token"]})
    assert _failure(answer) == "this endpoint needs an authenticated client"
    metadata = httpx.get(f"{auth_server.url}/.well-known/openid-configuration").json()
    assert "none" not in metadata["introspection_endpoint_auth_methods_supported"]
    assert "none" in metadata["token_endpoint_auth_methods_supported"]  # PKCE clients


def test_discovery_lists_the_scopes_a_partner_can_ask_for(auth_server: AuthServer) -> None:
    metadata = httpx.get(f"{auth_server.url}/.well-known/openid-configuration").json()
    assert set(metadata["scopes_supported"]) == set(CONSENT_SCOPES)
    assert "webhooks.manage" not in metadata["scopes_supported"]  # client credentials only
    assert "directory.manage" not in metadata["scopes_supported"]  # first-party only


def test_refused_refresh_tokens_say_why(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    client = new_app()
    tokens = obtain_tokens(auth_server, browser(signed_in=True),
                           AuthRequest(client, scope="employee.info.read offline_access"), None)

    def refused(token: str, with_client: Client = client) -> str:
        response = refresh(auth_server, with_client, token)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_grant"
        return response.json()["error_description"]

    assert refused("kpr_" + "x" * 43) == "unknown refresh token"
    assert refused(tokens["refresh_token"], new_app()) == (
        "this refresh token was not issued to this client")
    first = tokens["refresh_token"]
    second = refresh(auth_server, client, first).json()["refresh_token"]
    assert refused(first) == "this refresh token was just used by another request"
    time.sleep(2.1)  # past the grace that tells a client racing itself from a thief
    assert refused(first) == (
        "this refresh token was used before: every token of its grant is revoked now")
    assert refused(second) == "this refresh token was revoked"


@pytest.mark.parametrize(("scope", "named"), [
    ("employee.info.read employee.bankaccount.read", "employee.bankaccount.read"),
    ("employee.info.read webhooks.manage", "webhooks.manage"),
    ("no.such.scope", "no.such.scope"),
])
def test_invalid_scope_at_authorize_names_the_scope(
    auth_server: AuthServer, browser: Callable[..., Browser], scope: str, named: str,
) -> None:
    request = AuthRequest(auth_server.clients["basic"], scope=scope)
    response = browser().authorize(request)
    assert app_error(response, request, auth_server) == "invalid_scope"
    params = callback_params(response.headers["location"], request.target)
    assert named in params["error_description"], params


@pytest.mark.parametrize("parameter", ["request", "request_uri"])
def test_request_objects_are_refused_by_name_not_ignored(
    auth_server: AuthServer, browser: Callable[..., Browser], parameter: str,
) -> None:
    metadata = httpx.get(f"{auth_server.url}/.well-known/openid-configuration").json()
    assert metadata[f"{parameter}_parameter_supported"] is False
    request = AuthRequest(auth_server.clients["basic"])
    value = "eyJhbGciOiJub25lIn0.e30." if parameter == "request" else "https://app.example/r"
    agent = browser()
    response = agent.http.get("/authorize", params={**request.params(), parameter: value})
    assert app_error(response, request, auth_server) == f"{parameter}_not_supported"
