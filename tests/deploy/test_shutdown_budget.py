"""The processes drain on SIGTERM within the grace periods the deployment gives them."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from cli import serve as serve_module
from shared.config import Settings
from tests.fixtures.backend import REPO_ROOT

KUBERNETES = REPO_ROOT / "deploy" / "kubernetes"


def _pod(name: str) -> dict:
    for document in yaml.safe_load_all((KUBERNETES / f"{name}.yaml").read_text()):
        if document["kind"] == "Deployment":
            return document["spec"]["template"]["spec"]
    raise AssertionError(name)


def test_serve_gives_uvicorn_a_graceful_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(serve_module, "_checked_settings", lambda: Settings(_env_file=None))
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append(kwargs))
    serve_module.serve(serve_module.Service.SYNC, host="127.0.0.1", port=9999)
    [kwargs] = calls
    assert kwargs["timeout_graceful_shutdown"] == serve_module.GRACEFUL_SHUTDOWN_S
    for name in ("auth", "registry", "sync"):
        pod = _pod(name)
        pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pre_stop + serve_module.GRACEFUL_SHUTDOWN_S < pod["terminationGracePeriodSeconds"]


def test_the_worker_drains_within_its_grace_period() -> None:
    assert _pod("worker")["terminationGracePeriodSeconds"] > serve_module.WORKER_DRAIN_S
    compose = yaml.safe_load((REPO_ROOT / "deploy" / "docker-compose.yml").read_text())
    grace = compose["services"]["worker"]["stop_grace_period"]
    assert int(grace.rstrip("s")) > serve_module.WORKER_DRAIN_S
