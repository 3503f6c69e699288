"""Bounded bodies on the real auth server (issue 14, finding 5; SECURITY 33, 38): the
token endpoint refuses a form over its 16 KiB with 413 and an OAuth error, before it is
read; a chunked body is cut off while it streams. (Every operation of every service is
walked in process by tests/security/test_hostile_requests.py.)"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator

import httpx
import pytest

from shared.body_limits import KiB
from tests.fixtures.auth_server import AuthServer

TOKEN_LIMIT = 16 * KiB


def _refused(response: httpx.Response) -> None:
    assert response.status_code == 413, (response.status_code, response.text[:200])
    assert response.json()["error"] == "invalid_request"
    assert response.headers["cache-control"] == "no-store"


def _answer_to_headers_only(server: AuthServer, path: str, declared: int) -> httpx.Response:
    """Send only the request head, announcing `declared` body bytes, and read the answer:
    a server that answers has decided without reading any of the body."""
    url = httpx.URL(server.url)
    head = (f"POST {path} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {declared}\r\n\r\n").encode()
    with socket.create_connection((url.host, url.port), timeout=10) as sock:
        sock.sendall(head)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    status_line, _, rest = raw.partition(b"\r\n")
    header_block, _, body = rest.partition(b"\r\n\r\n")
    headers = dict(line.decode().split(": ", 1) for line in header_block.split(b"\r\n"))
    return httpx.Response(int(status_line.split()[1]), headers=headers, content=body)


@pytest.mark.parametrize("path", ["/token", "/par", "/revoke", "/introspect"])
def test_line38_a_form_over_the_limit_is_413(auth_server: AuthServer, path: str,
                                             fresh_address: Callable[[], str]) -> None:
    with httpx.Client(transport=httpx.HTTPTransport(local_address=fresh_address()),
                      timeout=30) as http:
        just_fits = http.post(f"{auth_server.url}{path}",
                              content=b"grant_type=x&pad=" + b"p" * (TOKEN_LIMIT - 17),
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert just_fits.status_code in (400, 401), just_fits.text
    # 5 MB announced: the answer comes before a byte of the body was sent, and the
    # server closes the connection rather than reading the rest for the next request.
    refused = _answer_to_headers_only(auth_server, path, 5_000_000)
    _refused(refused)
    assert refused.headers["connection"] == "close"
    # Sent for real, the body meets either that answer or, once the server has closed
    # while the client still writes, a reset connection: never anything read and used.
    with httpx.Client(transport=httpx.HTTPTransport(local_address=fresh_address()),
                      timeout=30) as http, contextlib.suppress(httpx.TransportError):
        _refused(http.post(f"{auth_server.url}{path}",
                           data={"grant_type": "client_credentials", "pad": "p" * 5_000_000}))


def test_line38_a_chunked_body_is_cut_off_while_it_streams(
    auth_server: AuthServer, fresh_address: Callable[[], str],
) -> None:
    """50 MB offered without Content-Length: the server answers (or closes) long before
    the client could send it all."""
    total, sent = 50 * 1024 * KiB, 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        while sent < total:
            sent += 64 * KiB
            yield b"p" * (64 * KiB)

    with httpx.Client(transport=httpx.HTTPTransport(local_address=fresh_address()),
                      timeout=30) as http:
        try:
            response = http.post(f"{auth_server.url}/token", content=body(),
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
        except httpx.TransportError:
            response = None  # the server closed the connection on the unread rest
    if response is not None:
        _refused(response)
    assert sent < total // 2, f"the client could send {sent} bytes"
