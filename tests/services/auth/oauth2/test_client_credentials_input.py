"""Client credentials as hostile input (issue 14, findings 3 and 4; SECURITY 17, 38): the
failure limit counts a client id under the spelling that authenticates, whatever its
encoding in HTTP Basic, and a Basic header that is not base64 or not UTF-8 is an
`invalid_client`, never a server error."""

from __future__ import annotations

import base64
from collections.abc import Callable

import httpx
import pytest

from tests.fixtures.auth_server import AuthServer, Client

CLIENT_AUTHENTICATED = ("/token", "/revoke", "/introspect")
MALFORMED_BASIC = {
    "not utf-8": "Basic /w==",
    "not utf-8 after the colon": "Basic " + base64.b64encode(b"kp_x:\xff\xfe").decode(),
    "bad base64": "Basic !!!!",
    "no colon": "Basic " + base64.b64encode(b"kp_x").decode(),
    "no value": "Basic",
    "bad percent-encoding": "Basic " + base64.b64encode(b"kp%ZZ%FF:secret").decode(),
    "huge": "Basic " + base64.b64encode(b"kp_" + b"x" * 6000 + b":s").decode(),
}


def _percent_encoded(client_id: str) -> str:
    """Every byte of the id as %XX (the way `kp%5F...` spells `kp_...`)."""
    return "".join(f"%{byte:02X}" for byte in client_id.encode())


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def _post(server: AuthServer, path: str, authorization: str, data: dict[str, str],
          source: str) -> httpx.Response:
    with httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=30) as http:
        return http.post(f"{server.url}{path}", data=data,
                         headers={"Authorization": authorization})


FORM = {"grant_type": "client_credentials", "token": "kpat_unknown"}


@pytest.mark.parametrize("path", CLIENT_AUTHENTICATED)
def test_line38_a_malformed_basic_header_is_invalid_client(
    auth_server: AuthServer, fresh_address: Callable[[], str], path: str,
) -> None:
    for what, header in MALFORMED_BASIC.items():
        response = _post(auth_server, path, header, FORM, fresh_address())
        assert response.status_code == 401, (what, response.status_code, response.text[:200])
        assert response.json()["error"] == "invalid_client", what
        assert response.headers["cache-control"] == "no-store"


def test_line38_the_challenge_api_refuses_a_malformed_basic_header(
    auth_server: AuthServer, fresh_address: Callable[[], str],
) -> None:
    with httpx.Client(transport=httpx.HTTPTransport(local_address=fresh_address()),
                      timeout=30) as http:
        for what, header in MALFORMED_BASIC.items():
            response = http.get(f"{auth_server.url}/oauth2/login-requests/x",
                                headers={"Authorization": header})
            assert response.status_code == 401, (what, response.text[:200])


def test_a_percent_encoded_client_id_authenticates_as_the_plain_one(
    auth_server: AuthServer, new_app: Callable[..., Client], fresh_address: Callable[[], str],
) -> None:
    """RFC 6749 section 2.3.1: the id and secret are form-urlencoded inside Basic."""
    app = new_app(auth_method="client_secret_basic", grant_types=["client_credentials"])
    encoded = _percent_encoded(app.client_id)
    response = _post(auth_server, "/token", _basic(encoded, app.secret),
                     {"grant_type": "client_credentials"}, fresh_address())
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("fail_with", ["plain", "percent-encoded"])
def test_line17_the_client_failure_limit_counts_every_spelling_of_a_client_id(
    auth_server: AuthServer, new_app: Callable[..., Client], fresh_address: Callable[[], str],
    fail_with: str,
) -> None:
    app = new_app(auth_method="client_secret_basic", grant_types=["client_credentials"])
    spelling = {"plain": app.client_id, "percent-encoded": _percent_encoded(app.client_id)}
    other = spelling["percent-encoded" if fail_with == "plain" else "plain"]
    form = {"grant_type": "client_credentials"}
    address = fresh_address()
    for _ in range(auth_server.limits["client_auth"]):
        response = _post(auth_server, "/token", _basic(spelling[fail_with], "kps_wrong"), form,
                         address)
        assert response.status_code == 401, response.text
    # The right secret under the other spelling is still this client from this address.
    response = _post(auth_server, "/token", _basic(other, app.secret), form, address)
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) > 0
    # The client's own servers elsewhere are not locked out (the limit is per address).
    response = _post(auth_server, "/token", _basic(other, app.secret), form, fresh_address())
    assert response.status_code == 200, response.text
