"""Running `koppel`: as a child process (what an operator sees) or in-process (faster)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session
from typer.testing import CliRunner

from cli.main import app
from shared.audit_mac import use_settings
from shared.config import Settings, get_settings

Koppel = Callable[..., subprocess.CompletedProcess[str]]
Invoke = Callable[..., Result]


@pytest.fixture
def cli_env(subprocess_env: dict[str, str]) -> dict[str, str]:
    """The run's KOPPEL_* environment, a copy the test may change."""
    return dict(subprocess_env)


@pytest.fixture
def koppel(
    cli_env: dict[str, str], tmp_path: Path, committing_sessions: sessionmaker[Session]
) -> Koppel:
    """Run `koppel ARGS...` as a child process; the tables are emptied after the test."""

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli", *args],
            env=env or cli_env,
            cwd=tmp_path,  # no developer's .env
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


@pytest.fixture
def invoke(
    cli_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    committing_sessions: sessionmaker[Session],
    settings: Settings,
) -> Iterator[Invoke]:
    """Run the command line in this process with the run's settings."""
    monkeypatch.chdir(tmp_path)
    for name, value in cli_env.items():
        if name.startswith("KOPPEL_"):
            monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    runner = CliRunner()

    def run(*args: str, input: str | None = None) -> Result:
        get_settings.cache_clear()  # the test may have changed the environment
        return runner.invoke(app, list(args), input=input)

    yield run
    get_settings.cache_clear()
    use_settings(settings)  # a command registered its own key ring for the audit chain
