"""Pushed authorization requests (RFC 9126), end to end on the real auth service: the
client pushes its request to /par (authenticated as at the token endpoint, validated as
/authorize validates), then sends the browser to /authorize with only `client_id` and the
`request_uri`, which works once, for that client, until it expires. A client (or the
server) that requires PAR gets nothing through the front channel."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
import redis

from services.auth.oauth2.pushed import URN_PREFIX
from tests.fixtures.auth_server import AuthServer, Client, run_auth_service_in_process
from tests.services.auth.support import (
    AuthRequest,
    Browser,
    User,
    callback_params,
    exchange,
    oauth_error,
    parse_page,
    post_form,
    push,
    pushed_authorize,
)

SCOPE = "employee.info.read offline_access"


def pushed(server: AuthServer, request: AuthRequest, /, **overrides: str | None) -> dict:
    response = push(server, request, **overrides)
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    return response.json()


def refused(response: httpx.Response, error: str, status: int = 400) -> str:
    """The JSON OAuth error of the PAR endpoint; returns its description."""
    assert response.status_code == status, response.text
    assert oauth_error(response) == error
    assert response.headers["cache-control"] == "no-store"
    return response.json()["error_description"]


def error_page(response: httpx.Response) -> str:
    """The error code an HTML error page shows (nothing goes to the app)."""
    assert response.status_code == 400, response.text[:300]
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    return parse_page(response.text).errors[0]


def redis_key(server: AuthServer, client_id: str, request_uri: str) -> str:
    return f"koppel:par:{server.digest(f'{client_id} {request_uri}')}"


def test_a_pushed_request_runs_end_to_end_once(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
    new_user: Callable[..., User],
) -> None:
    app, user = new_app(), new_user()
    request = AuthRequest(app, scope=SCOPE)
    answer = pushed(auth_server, request)
    assert answer["request_uri"].startswith(URN_PREFIX)
    assert 60 <= answer["expires_in"] <= 600
    agent = browser()
    # Parameters on the URL besides client_id and request_uri are ignored (section 4).
    start = pushed_authorize(agent, app.client_id, answer["request_uri"],
                             redirect_uri="https://attacker.example/cb", scope="openid",
                             state="forged")
    assert start.status_code == 303
    linked = agent.walk(start, request.target, user)
    assert linked.pages == ["login", "consent"]
    assert linked.params["state"] == request.state and linked.params["iss"] == auth_server.url
    assert "employee.info.read" in linked.scopes_shown and "openid" not in linked.scopes_shown
    tokens = exchange(auth_server, request, linked.params["code"])
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["scope"] == SCOPE and "refresh_token" in tokens.json()

    again = pushed_authorize(browser(), app.client_id, answer["request_uri"])
    assert error_page(again) == "invalid_request_uri"


def test_a_public_client_pushes_with_its_client_id_and_a_confidential_one_must_authenticate(
    auth_server: AuthServer, new_app: Callable[..., Client],
) -> None:
    public = new_app(auth_method="none")
    assert pushed(auth_server, AuthRequest(public))["request_uri"].startswith(URN_PREFIX)

    confidential = new_app()
    anonymous = httpx.post(f"{auth_server.url}/par",
                           data=AuthRequest(confidential).params())
    assert "client_secret_basic" in refused(anonymous, "invalid_client", 401)
    assert "www-authenticate" not in anonymous.headers
    wrong = post_form(auth_server, "/par",
                      Client(confidential.client_id, "not-the-secret", "client_secret_basic",
                             confidential.redirect_uris, confidential.scopes),
                      AuthRequest(confidential).params())
    refused(wrong, "invalid_client", 401)
    assert wrong.headers["www-authenticate"].startswith("Basic")


def test_an_expired_request_uri_is_refused(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    app = new_app()
    answer = pushed(auth_server, AuthRequest(app))
    key = redis_key(auth_server, app.client_id, answer["request_uri"])
    store = redis.Redis.from_url(auth_server.redis_url)
    try:
        # Redis keeps it exactly as long as the answer said, then forgets it.
        assert 0 < store.ttl(key) <= answer["expires_in"]
        assert store.expire(key, 0)  # its time is up
    finally:
        store.close()
    response = pushed_authorize(browser(), app.client_id, answer["request_uri"])
    assert error_page(response) == "invalid_request_uri"


def test_another_clients_request_uri_is_unknown_and_stays_its_owners(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    owner, other = new_app(), new_app()
    answer = pushed(auth_server, AuthRequest(owner))
    assert error_page(pushed_authorize(browser(), other.client_id,
                                       answer["request_uri"])) == "invalid_request_uri"
    # Without a client_id it names no client's request at all.
    without_client = browser().http.get("/authorize",
                                        params={"request_uri": answer["request_uri"]})
    assert error_page(without_client) == "invalid_request_uri"
    # The owner's request was not spent by the attempts.
    mine = pushed_authorize(browser(), owner.client_id, answer["request_uri"])
    assert mine.status_code == 303 and mine.headers["location"].startswith("/login")


@pytest.mark.parametrize(("override", "error", "words"), [
    ({"redirect_uri": "http://127.0.0.1:9999/not-registered"}, "invalid_request",
     "Redirect URI"),
    ({"scope": "employee.info.read salary.secret"}, "invalid_scope", "salary.secret"),
    ({"code_challenge": None, "code_challenge_method": None}, "invalid_request", "PKCE"),
    ({"code_challenge_method": "plain"}, "invalid_request", "S256"),
    ({"response_type": "token"}, "unsupported_response_type", ""),
    ({"request_uri": URN_PREFIX + "nested"}, "invalid_request", "request_uri"),
    ({"request": "eyJhbGciOiJub25lIn0.e30."}, "request_not_supported", "request"),
    ({"prompt": "none login"}, "invalid_request", "prompt"),
])
def test_a_bad_pushed_request_gets_a_json_error_and_no_request_uri(
    auth_server: AuthServer, new_app: Callable[..., Client], override: dict, error: str,
    words: str,
) -> None:
    response = push(auth_server, AuthRequest(new_app()), **override)
    assert words in refused(response, error)
    assert "request_uri" not in response.json()


def test_a_pushed_client_id_must_be_the_authenticated_client(
    auth_server: AuthServer, new_app: Callable[..., Client],
) -> None:
    app, other = new_app(), new_app()
    response = push(auth_server, AuthRequest(app), client_id=other.client_id)
    assert "client_id" in refused(response, "invalid_request")


def test_client_credentials_are_not_kept_with_the_pushed_request(
    auth_server: AuthServer, new_app: Callable[..., Client],
) -> None:
    app = new_app(auth_method="client_secret_post")
    answer = pushed(auth_server, AuthRequest(app))
    store = redis.Redis.from_url(auth_server.redis_url)
    try:
        kept = store.get(redis_key(auth_server, app.client_id, answer["request_uri"]))
    finally:
        store.close()
    assert kept is not None and app.secret is not None
    assert app.secret.encode() not in kept and b"client_secret" not in kept
    # Only the digest of the request_uri is a key: a dump holds no usable reference.
    assert answer["request_uri"].encode() not in kept


def test_a_client_that_requires_par_gets_no_front_channel_request(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    app = new_app(require_pushed_authorization_requests=True)
    request = AuthRequest(app)
    direct = browser().authorize(request)
    assert direct.status_code == 303
    answer = callback_params(direct.headers["location"], request.target)
    assert answer["error"] == "invalid_request" and answer["state"] == request.state
    assert answer["error_description"] == "pushed authorization request required"

    request_uri = pushed(auth_server, request)["request_uri"]
    via_par = pushed_authorize(browser(), app.client_id, request_uri)
    assert via_par.status_code == 303 and via_par.headers["location"].startswith("/login")


def test_a_request_uri_that_is_not_a_pushed_one_is_still_unsupported(
    auth_server: AuthServer, browser: Callable[..., Browser], new_app: Callable[..., Client],
) -> None:
    request = AuthRequest(new_app())
    response = browser().authorize(request, request_uri="https://app.example/request.jwt")
    assert response.status_code == 303
    answer = callback_params(response.headers["location"], request.target)
    assert answer["error"] == "request_uri_not_supported"


def test_discovery_names_the_par_endpoint(auth_server: AuthServer) -> None:
    metadata = httpx.get(f"{auth_server.url}/.well-known/oauth-authorization-server").json()
    assert metadata["pushed_authorization_request_endpoint"] == f"{auth_server.url}/par"
    assert metadata["require_pushed_authorization_requests"] is False
    # Arbitrary request_uri values stay unsupported; PAR's work regardless (section 5).
    assert metadata["request_uri_parameter_supported"] is False
    assert "none" in metadata["token_endpoint_auth_methods_supported"]


@pytest.fixture(scope="module")
def par_only_server(auth_server: AuthServer, settings) -> Iterator[str]:
    """A second auth service on the same database and Redis, with
    KOPPEL_REQUIRE_PUSHED_AUTHORIZATION_REQUESTS on."""
    database_url = auth_server.engine.url.render_as_string(hide_password=False)
    with run_auth_service_in_process(settings, database_url, auth_server.redis_url,
                                     require_pushed_authorization_requests=True) as url:
        yield url


def test_the_server_wide_setting_requires_par_of_every_client(
    auth_server: AuthServer, par_only_server: str, new_app: Callable[..., Client],
) -> None:
    metadata = httpx.get(f"{par_only_server}/.well-known/openid-configuration").json()
    assert metadata["require_pushed_authorization_requests"] is True
    app = new_app()
    request = AuthRequest(app)
    with httpx.Client(base_url=par_only_server, follow_redirects=False) as http:
        direct = http.get("/authorize", params=request.params())
        assert direct.status_code == 303
        answer = callback_params(direct.headers["location"], request.target)
        assert answer["error"] == "invalid_request"
        assert answer["error_description"] == "pushed authorization request required"

        response = http.post("/par", data=request.params(), auth=(app.client_id, app.secret))
        assert response.status_code == 201, response.text
        start = http.get("/authorize", params={"client_id": app.client_id,
                                               "request_uri": response.json()["request_uri"]})
        assert start.status_code == 303 and start.headers["location"].startswith("/login")
