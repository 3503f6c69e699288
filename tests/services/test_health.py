"""Every service answers /healthz, /readyz, /openapi.json and /metrics, and errors as
problem+json; readiness says when Redis is gone."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from shared.config import Settings
from tests.services.conftest import APP_FACTORIES, running

PROBLEM_JSON = "application/problem+json"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_healthz(service_client: httpx.AsyncClient) -> None:
    response = await service_client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_with_database_and_redis(service_client: httpx.AsyncClient) -> None:
    response = await service_client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


async def test_openapi_document(service_client: httpx.AsyncClient) -> None:
    response = await service_client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert "/healthz" in document["paths"]


async def test_metrics_count_requests_by_route(
    service_client: httpx.AsyncClient, request: pytest.FixtureRequest
) -> None:
    service = request.node.callspec.params["service_client"]
    await service_client.get("/healthz")
    response = await service_client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    counted = {
        (sample.labels["service"], sample.labels["route"], sample.labels["status"]): sample.value
        for family in text_string_to_metric_families(response.text)
        if family.name == "koppel_http_requests"
        for sample in family.samples
        if sample.name == "koppel_http_requests_total"
    }
    assert counted[(service, "/healthz", "200")] >= 1


async def test_an_unknown_path_is_a_problem_document(service_client: httpx.AsyncClient) -> None:
    response = await service_client.get("/no/such/path")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["status"] == 404
    assert body["type"] == "urn:koppel:problem:not-found"


@pytest.mark.parametrize("service", sorted(APP_FACTORIES))
async def test_readiness_fails_while_redis_is_unreachable(
    service: str, settings: Settings, committing_sessions: sessionmaker[Session]
) -> None:
    unreachable = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{_free_port()}/0"})
    async with running(APP_FACTORIES[service](unreachable)) as client:
        ready = await client.get("/readyz")
        health = await client.get("/healthz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("unavailable")
    assert health.status_code == 200


def test_uvicorn_serves_the_auth_service_on_a_real_socket(
    subprocess_env: dict[str, str], committing_sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    port = _free_port()
    log = tmp_path / "uvicorn.log"
    with log.open("wb") as stderr:
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "services.auth.app:create_app", "--factory",
             "--host", "127.0.0.1", "--port", str(port)],
            env=subprocess_env,
            cwd=tmp_path,  # no developer .env
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        response = _wait_for(f"http://127.0.0.1:{port}/readyz", server, log)
        assert response.status_code == 200
        assert response.json()["checks"] == {"database": "ok", "redis": "ok"}
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    # uvicorn shuts down cleanly, then re-raises SIGTERM.
    assert server.returncode in (0, -signal.SIGTERM), log.read_text()[-2000:]
    assert "Application shutdown complete" in log.read_text()


def _wait_for(
    url: str, server: subprocess.Popen, log: Path, timeout: float = 30.0
) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            pytest.fail(f"uvicorn exited: {log.read_text()[-2000:]}")
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
