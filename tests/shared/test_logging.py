"""Structured logs: JSON lines with a request id, and never a secret in them."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
import structlog
from fastapi import FastAPI

from shared.config import Settings
from shared.logging import configure_logging
from shared.models import Company, Environment, UserTemplate
from shared.request_id import RequestIdMiddleware, request_id_from
from tests.fixtures.auth_server import AuthServer
from tests.fixtures.factories import make_user
from tests.services.auth.support import AuthRequest, Browser, User, exchange, refresh

SESSION_COOKIE = "koppel_session"


@pytest.mark.parametrize("supplied", [None, "", "a" * 129, "bad id", "x\r\nforged: 1",
                                      "-leading", "ünï"])
def test_a_malformed_request_id_is_replaced(supplied: str | None) -> None:
    made = request_id_from(supplied)
    assert made != supplied
    assert len(made) == 32 and int(made, 16) >= 0


@pytest.mark.parametrize("supplied", ["abc", "0f8b2c1e-7c1d-4d6e-9a0b-2f3e4d5c6b7a",
                                      "lb.7:xyz_1", "A" * 128])
def test_a_well_formed_request_id_is_kept(supplied: str) -> None:
    assert request_id_from(supplied) == supplied


async def test_the_request_id_is_logged_and_returned(capsys: pytest.CaptureFixture) -> None:
    configure_logging(Settings(log_json=True, log_level="info"), "test")
    app = FastAPI()
    app.add_middleware(RequestIdMiddleware, service="test")

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        structlog.get_logger("koppel.test").info("said hello")
        return {"hello": "world"}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        kept = await client.get("/hello", headers={"X-Request-ID": "req-123"})
        made = await client.get("/hello", headers={"X-Request-ID": "no good"})
    assert kept.headers["x-request-id"] == "req-123"
    assert made.headers["x-request-id"] not in ("", "no good")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]
    said = [line for line in lines if line.get("event") == "said hello"]
    assert [line["request_id"] for line in said] == ["req-123", made.headers["x-request-id"]]
    assert all(line["service"] == "test" and line["level"] == "info" for line in said)
    # Outside a request nothing stays bound.
    assert "request_id" not in structlog.contextvars.get_contextvars()


def _user(server: AuthServer) -> User:
    with server.sessions() as session, session.begin():
        environment = session.get(Environment, uuid.UUID(server.demo["environment"]["id"]))
        company_id = server.demo["debtors"][0]["companies"][0]["id"]
        company = session.get(Company, uuid.UUID(company_id))
        password = f"Log-Test-{uuid.uuid4().hex[:12]}!"
        user = make_user(session, environment, template=UserTemplate.HR_MANAGER,
                         companies=[company], password=password)
        return User(str(user.id), user.email, password, str(UserTemplate.HR_MANAGER))


def test_a_full_flow_logs_json_with_request_ids_and_no_secret(
    auth_server_process: AuthServer,
) -> None:
    # The child process: its log is the server's alone, JSON as in production.
    auth_server = auth_server_process
    client = auth_server.clients["post"]
    user = _user(auth_server)
    agent = Browser(auth_server)
    try:
        request = AuthRequest(client, scope="employee.info.read offline_access openid")
        login_page = agent.follow(agent.authorize(request))
        assert agent.login(login_page, user, password="Wrong-Pa55word!").status_code == 401
        linked = agent.link(request, user)
        session_cookie = agent.http.cookies.get(SESSION_COOKIE)
    finally:
        agent.close()
    tokens = exchange(auth_server, request, linked.params["code"]).json()
    request_id = f"flow-{uuid.uuid4().hex}"
    second = httpx.post(
        f"{auth_server.url}/token", headers={"X-Request-ID": request_id},
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
              "client_id": client.client_id, "client_secret": client.secret},
    )
    assert second.status_code == 200, second.text
    assert second.headers["x-request-id"] == request_id
    third = refresh(auth_server, client, second.json()["refresh_token"]).json()
    metrics = httpx.get(f"{auth_server.url}/metrics").text
    assert 'koppel_tokens_issued_total{grant_type="authorization_code"}' in metrics
    assert 'koppel_tokens_issued_total{grant_type="refresh_token"}' in metrics
    assert 'koppel_consent_decisions_total{decision="allow"}' in metrics

    log = auth_server.log_text()
    events = []
    for line in log.splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    mine = [e for e in events if e.get("request_id") == request_id]
    assert mine, "the request's log lines carry its id"
    assert any("POST /token" in e.get("event", "") for e in mine)
    assert all(e.get("service") == "auth" for e in mine)
    secrets_seen = {
        "code": linked.params["code"],
        "access token": tokens["access_token"],
        "id token": tokens["id_token"],
        "refresh token": tokens["refresh_token"],
        "refreshed access token": second.json()["access_token"],
        "refreshed refresh token": second.json()["refresh_token"],
        "third refresh token": third["refresh_token"],
        "client secret": client.secret,
        "password": user.password,
        "wrong password": "Wrong-Pa55word!",
        "session cookie": session_cookie,
        "PKCE verifier": request.pkce.verifier,
    }
    for what, secret in secrets_seen.items():
        assert secret, what
        assert secret not in log, f"the {what} is in the server log"
        if secret.count(".") == 2:
            assert secret.rsplit(".", 1)[1] not in log, f"the {what} is in the server log"
