"""The authorization endpoint (SECURITY.md lines 1-4, 8 and 9): what it refuses, and
where it sends the refusal: to the app only when the client and the redirect URI are
valid, otherwise to an error page that leaves the app out."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from sqlmodel import func, select

from shared.models import App, AuthorizationCode
from tests.fixtures.auth_server import (
    CALLBACK,
    SECOND_CALLBACK,
    WEB_CALLBACK,
    AuthServer,
    Client,
)
from tests.services.auth.support import (
    AuthRequest,
    Browser,
    User,
    callback_params,
    exchange,
    introspect,
    parse_page,
    refresh,
)


def codes_of(server: AuthServer, client: Client) -> int:
    with server.sessions() as session:
        app_id = session.exec(select(App.id).where(App.client_id == client.client_id)).one()
        return session.exec(
            select(func.count()).select_from(AuthorizationCode)
            .where(AuthorizationCode.app_id == app_id)
        ).one()


def assert_error_page(response: httpx.Response) -> None:
    """An HTML page for the user; nothing for the app (no redirect, no code)."""
    assert response.status_code == 400, response.text[:300]
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert "code=" not in response.text
    # Nor a link back to the app that a click would follow.
    assert not any(link.startswith("http") for link in parse_page(response.text).links)


def app_error(response: httpx.Response, request: AuthRequest, server: AuthServer) -> str:
    """The error of a redirect to the app, after checking that it carries state and iss
    and comes as 303 See Other (FAPI 2.0 section 5.3.2.2)."""
    assert response.status_code == 303, (response.status_code, response.text[:300])
    params = callback_params(response.headers["location"], request.target)
    assert params["state"] == request.state
    assert params["iss"] == server.url
    assert "code" not in params
    return params["error"]


# ---- Line 1: the redirect URI must match a registered one exactly --------------------

REDIRECT_URI_VARIANTS = {
    "trailing_slash": ("basic", CALLBACK + "/"),
    "extra_query": ("basic", CALLBACK + "?next=/admin"),
    "extra_empty_query": ("basic", CALLBACK + "?"),
    "path_case": ("basic", CALLBACK.replace("callback", "Callback")),
    "scheme_case": ("basic", CALLBACK.replace("http://", "HTTP://")),
    "other_port": ("basic", CALLBACK.replace("9999", "9998")),
    "localhost_alias": ("basic", CALLBACK.replace("127.0.0.1", "localhost")),
    "dot_segment": ("basic", "http://127.0.0.1:9999/x/../callback"),
    "encoded_path": ("basic", "http://127.0.0.1:9999/%63allback"),
    "fragment": ("web", WEB_CALLBACK + "#frag"),
    "empty_fragment": ("web", WEB_CALLBACK + "#"),
    "suffix_domain": ("web", "https://app.partner.example.evil.test/cb"),
    "prefix_subdomain": ("web", "https://evil.app.partner.example/cb"),
    "userinfo_host": ("web", "https://app.partner.example@evil.test/cb"),
    "host_case": ("web", WEB_CALLBACK.replace("app.partner", "APP.partner")),
    "http_on_non_loopback": ("web", WEB_CALLBACK.replace("https://", "http://")),
    "path_suffix": ("web", WEB_CALLBACK + "/evil"),
}


@pytest.mark.parametrize("variant", sorted(REDIRECT_URI_VARIANTS))
def test_line01_redirect_uri_variants_get_error_page_no_redirect(
    auth_server: AuthServer, browser: Callable[..., Browser], variant: str
) -> None:
    name, uri = REDIRECT_URI_VARIANTS[variant]
    client = auth_server.clients[name]
    codes_before = codes_of(auth_server, client)
    response = browser().authorize(AuthRequest(client, redirect_uri=uri))
    assert_error_page(response)
    assert codes_of(auth_server, client) == codes_before


@pytest.mark.parametrize("suffix", ['"', "\\", "\u00e9", "\n", "%22"])
def test_line01_redirect_uri_with_odd_characters_gets_error_page(
    auth_server: AuthServer, browser: Callable[..., Browser], suffix: str
) -> None:
    """Characters that OAuth error descriptions may not carry: still a 400 page (it was a
    500 when Authlib refused to put the URI into its error description)."""
    client = auth_server.clients["basic"]
    assert_error_page(browser().authorize(AuthRequest(client, redirect_uri=CALLBACK + suffix)))


@pytest.mark.parametrize("response_type", ['code"', "c\u00f6de", "code\\"])
def test_line08_odd_response_type_is_refused_without_error(
    auth_server: AuthServer, browser: Callable[..., Browser], response_type: str
) -> None:
    request = AuthRequest(auth_server.clients["basic"])
    response = browser().authorize(request, response_type=response_type)
    assert response.status_code in (303, 400), response.text[:300]
    if response.status_code == 303:
        assert app_error(response, request, auth_server) in (
            "unsupported_response_type", "invalid_request")
    else:
        assert_error_page(response)


def test_line01_variant_with_a_logged_in_user_still_gets_no_code(
    auth_server: AuthServer, browser: Callable[..., Browser], new_user: Callable[..., User]
) -> None:
    """A session does not change anything: the request is judged before the user."""
    client = auth_server.clients["basic"]
    agent = browser()
    agent.log_in(AuthRequest(auth_server.clients["first_party"], scope="openid"), new_user())
    response = agent.authorize(AuthRequest(client, redirect_uri=CALLBACK + "/"))
    assert_error_page(response)
    # The exact URI is accepted (the refusal above was about the URI alone).
    exact = agent.authorize(AuthRequest(client))
    assert exact.status_code == 303
    assert exact.headers["location"].startswith("/consent?")


# ---- Line 2: unknown client; ambiguous redirect URI ---------------------------------


@pytest.mark.parametrize("client_id", ["no-such-client", "", "client-" + "x" * 300])
def test_line02_unknown_client_id_gets_error_page(
    auth_server: AuthServer, browser: Callable[..., Browser], client_id: str
) -> None:
    request = AuthRequest(auth_server.clients["basic"])
    assert_error_page(browser().authorize(request, client_id=client_id))


def test_line02_missing_client_id_gets_error_page(
    auth_server: AuthServer, browser: Callable[..., Browser]
) -> None:
    request = AuthRequest(auth_server.clients["basic"])
    assert_error_page(browser().authorize(request, client_id=None))


def test_line02_two_registered_uris_and_none_sent_gets_error_page(
    auth_server: AuthServer, browser: Callable[..., Browser]
) -> None:
    request = AuthRequest(auth_server.clients["two_uris"])
    assert_error_page(browser().authorize(request, redirect_uri=None))
    # Even an error of another kind is not sent to a guessed URI.
    assert_error_page(browser().authorize(request, redirect_uri=None, scope="webhooks.manage"))


def test_line02_either_registered_uri_may_be_named(
    auth_server: AuthServer, browser: Callable[..., Browser]
) -> None:
    for uri in (CALLBACK, SECOND_CALLBACK):
        response = browser().authorize(AuthRequest(auth_server.clients["two_uris"],
                                                   redirect_uri=uri))
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?")


def test_line02_one_registered_uri_may_be_left_out(
    auth_server: AuthServer, browser: Callable[..., Browser]
) -> None:
    request = AuthRequest(auth_server.clients["basic"])
    response = browser().authorize(request, redirect_uri=None, scope="webhooks.manage")
    assert app_error(response, request, auth_server) == "invalid_scope"


# ---- Line 3: scopes outside the registered set ---------------------------------------


@pytest.mark.parametrize("scope", [
    "employee.bankaccount.read",  # a consent scope the app did not register
    "employee.info.read employee.absence.read",  # one good, one not registered
    "webhooks.manage",  # app-level: client credentials only, never through authorize
    "directory.manage",  # first-party only
    "no.such.scope",
])
def test_line03_scope_outside_registered_redirects_invalid_scope(
    auth_server: AuthServer, browser: Callable[..., Browser], scope: str
) -> None:
    request = AuthRequest(auth_server.clients["basic"], scope=scope)
    assert app_error(browser().authorize(request), request, auth_server) == "invalid_scope"


def test_line03_a_registered_write_scope_covers_its_read_scope(
    auth_server: AuthServer, browser: Callable[..., Browser],
    new_app: Callable[..., Client], new_user: Callable[..., User],
) -> None:
    """docs/product.md section 4: a write scope implies its read scope, so an app that
    registered `employee.info` may ask for only `employee.info.read` (issue 14, finding
    10), through the whole code flow and on refresh; never for more than it registered."""
    client = new_app(scopes=("company.info", "employee.info", "offline_access"))
    user = new_user()
    request = AuthRequest(client, scope="employee.info.read company.info.read offline_access")
    agent = browser()
    linked = agent.link(request, user)
    assert "code" in linked.params, linked.location
    assert set(linked.scopes_shown) == {"employee.info.read", "company.info.read",
                                        "offline_access"}
    response = exchange(auth_server, request, linked.params["code"])
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert set(tokens["scope"].split()) == set(request.scope.split())
    assert set(introspect(auth_server, client, tokens["access_token"])["scope"].split()) == (
        set(request.scope.split()))

    # A grant of write scopes narrows to their reads on refresh too, and widens to nothing.
    wide = AuthRequest(client, scope="employee.info offline_access")
    granted = exchange(auth_server, wide, agent.link(wide, user).params["code"]).json()
    narrowed = refresh(auth_server, client, granted["refresh_token"], scope="employee.info.read")
    assert narrowed.status_code == 200, narrowed.text
    assert narrowed.json()["scope"] == "employee.info.read"
    wider = refresh(auth_server, client, narrowed.json()["refresh_token"],
                    scope="employee.payment.read")
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
    unregistered = AuthRequest(client, scope="employee.payment.read")
    assert app_error(agent.authorize(unregistered), unregistered, auth_server) == "invalid_scope"


def test_line03_invalid_scope_with_unregistered_uri_gets_error_page(
    auth_server: AuthServer, browser: Callable[..., Browser]
) -> None:
    request = AuthRequest(auth_server.clients["basic"], scope="employee.bankaccount.read",
                          redirect_uri="https://evil.test/cb")
    assert_error_page(browser().authorize(request))


# ---- Line 4: PKCE with S256 for every client -----------------------------------------


@pytest.mark.parametrize("name", ["basic", "post", "public"])
def test_line04_missing_code_challenge_is_invalid_request(
    auth_server: AuthServer, browser: Callable[..., Browser], name: str
) -> None:
    request = AuthRequest(auth_server.clients[name])
    response = browser().authorize(request, code_challenge=None, code_challenge_method=None)
    assert app_error(response, request, auth_server) == "invalid_request"


@pytest.mark.parametrize("method", ["plain", None, "s256", "S512"])
def test_line04_code_challenge_method_other_than_s256_is_invalid_request(
    auth_server: AuthServer, browser: Callable[..., Browser], method: str | None
) -> None:
    """`plain`, a missing method (RFC 7636 would read it as plain) and anything else."""
    request = AuthRequest(auth_server.clients["basic"])
    response = browser().authorize(request, code_challenge_method=method)
    assert app_error(response, request, auth_server) == "invalid_request"


def test_line04_pkce_required_for_first_party_client_too(
    auth_server: AuthServer, browser: Callable[..., Browser]
) -> None:
    request = AuthRequest(auth_server.clients["first_party"], scope="openid")
    response = browser().authorize(request, code_challenge=None, code_challenge_method=None)
    assert app_error(response, request, auth_server) == "invalid_request"


# ---- Line 8: only the code flow -------------------------------------------------------


@pytest.mark.parametrize("response_type", ["token", "code token", "id_token", "code id_token"])
def test_line08_response_type_other_than_code_is_unsupported_response_type(
    auth_server: AuthServer, browser: Callable[..., Browser], response_type: str
) -> None:
    request = AuthRequest(auth_server.clients["basic"])
    response = browser().authorize(request, response_type=response_type)
    assert app_error(response, request, auth_server) == "unsupported_response_type"
    # No token in the fragment or anywhere else.
    assert "#" not in response.headers["location"]


def test_line08_response_type_token_with_unregistered_uri_gets_error_page(
    auth_server: AuthServer, browser: Callable[..., Browser]
) -> None:
    request = AuthRequest(auth_server.clients["basic"], redirect_uri="https://evil.test/cb")
    assert_error_page(browser().authorize(request, response_type="token"))


# ---- Line 9: iss on every answer; metadata --------------------------------------------


def test_line09_metadata_advertises_iss_parameter_and_s256_only(auth_server: AuthServer) -> None:
    for path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
        metadata = httpx.get(auth_server.url + path).json()
        assert metadata["issuer"] == auth_server.url
        assert metadata["authorization_response_iss_parameter_supported"] is True
        assert metadata["code_challenge_methods_supported"] == ["S256"]
        assert metadata["response_types_supported"] == ["code"]
        assert "password" not in metadata["grant_types_supported"]
        assert "implicit" not in metadata["grant_types_supported"]


def test_line09_every_authorization_response_carries_iss(
    auth_server: AuthServer, browser: Callable[..., Browser], new_user: Callable[..., User],
) -> None:
    basic = auth_server.clients["basic"]
    user = new_user()
    answers: list[tuple[str, str]] = []  # (what, location)

    agent = browser()

    def redirect_of(response: httpx.Response) -> str:
        """Where the browser ends up, through the consent step if it goes there."""
        assert response.status_code in (302, 303)
        if response.headers["location"].startswith("/consent?"):
            return redirect_of(agent.follow(response))
        return response.headers["location"]

    for what, overrides in {
        "invalid_scope": {"scope": "employee.bankaccount.read"},
        "invalid_request": {"code_challenge_method": "plain"},
        "unsupported_response_type": {"response_type": "token"},
        "login_required": {"prompt": "none"},
    }.items():
        answers.append((what, redirect_of(agent.authorize(AuthRequest(basic), **overrides))))
    suspended = AuthRequest(auth_server.clients["suspended"])
    answers.append(("access_denied", redirect_of(agent.authorize(suspended))))
    answers.append(("denied", agent.link(AuthRequest(basic), user, decision="deny").location))
    answers.append(("code", agent.link(AuthRequest(basic), user).location))
    answers.append(("consent_required", redirect_of(agent.authorize(
        AuthRequest(basic, scope="employee.payment.read"), prompt="none"))))
    for what, location in answers:
        params = callback_params(location, CALLBACK)
        assert params.get("iss") == auth_server.url, (what, location)
        assert ("code" in params) == (what == "code"), (what, location)
