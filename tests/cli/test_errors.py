"""Configuration and database failures: one `koppel: error:` line, exit status 2."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import Result
from sqlalchemy import create_engine, text

from tests.cli.conftest import Invoke, Koppel

KEY = base64.b64encode(bytes(32)).decode()


def _assert_one_line_error(stdout: str, stderr: str, *needles: str) -> None:
    assert stdout == ""
    assert stderr.startswith("koppel: error: ")
    assert stderr.count("\n") == 1, stderr  # no traceback
    for needle in needles:
        assert needle in stderr


@pytest.mark.parametrize(
    ("overrides", "args", "needle"),
    [
        ({"KOPPEL_ENV": "staging"}, ("demo", "seed", "--json"), "KOPPEL_ENV"),
        ({"KOPPEL_ENV": "production"}, ("serve", "auth"), "production refuses to start"),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_2_in_a_real_process(
    koppel: Koppel, cli_env: dict[str, str], overrides: dict[str, str], args: tuple[str, ...],
    needle: str,
) -> None:
    result: subprocess.CompletedProcess[str] = koppel(*args, env={**cli_env, **overrides})

    assert result.returncode == 2
    _assert_one_line_error(result.stdout, result.stderr, needle)


class _ToStderr(logging.Handler):
    """Writes to whatever sys.stderr is when a record comes (the runner's capture)."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(self.format(record) + "\n")


def test_an_unmigrated_database_is_one_line_whatever_logging_is_set_up(
    invoke: Invoke, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    """The check that the schema is current says nothing else: alembic's INFO lines about
    the dialect stay out of it even in a process that logs INFO to stderr (an earlier
    command in the same process may have set that up)."""
    monkeypatch.setenv("KOPPEL_DATABASE_URL", f"sqlite:///{tmp_path}/empty.db")
    root, handler = logging.getLogger(), _ToStderr()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        result: Result = invoke("worker")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    assert result.exit_code == 2
    _assert_one_line_error(result.stdout, result.stderr, "koppel db upgrade")


@pytest.mark.parametrize(
    ("overrides", "args", "needle"),
    [
        ({"KOPPEL_KEYS": json.dumps({"a": KEY})}, ("keys", "rotate"), "KOPPEL_ACTIVE_KEY_ID"),
        (
            {"KOPPEL_DATABASE_URL": "postgresql://koppel@127.0.0.1:1/none"},
            ("partner", "create", "X", "--json"), "database error",
        ),
        ({"KOPPEL_DATABASE_URL": "sqlite:///{tmp}/empty.db"}, ("worker",), "koppel db upgrade"),
    ],
)
def test_unusable_keys_or_database_are_one_line_and_exit_2(
    invoke: Invoke, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    overrides: dict[str, str], args: tuple[str, ...], needle: str,
) -> None:
    for name, value in overrides.items():
        monkeypatch.setenv(name, value.replace("{tmp}", str(tmp_path)))

    result: Result = invoke(*args)

    assert result.exit_code == 2
    _assert_one_line_error(result.stdout, result.stderr, needle)


def test_db_upgrade_makes_the_sqlite_directory_and_migrates(
    invoke: Invoke, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    database = tmp_path / "fresh" / "nested" / "koppel.db"
    monkeypatch.setenv("KOPPEL_DATABASE_URL", f"sqlite:///{database}")

    result = invoke("db", "upgrade")

    assert result.exit_code == 0, result.stderr
    engine = create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    finally:
        engine.dispose()
