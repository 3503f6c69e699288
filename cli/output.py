"""How the command line speaks: JSON or tables on stdout, everything else on stderr,
and failures as one `koppel: error: ...` line with exit status 2.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, NoReturn, ParamSpec, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from sqlalchemy.exc import OperationalError

from shared.config import ConfigError
from shared.vault import VaultError

EXIT_ERROR = 2

P = ParamSpec("P")
R = TypeVar("R")


class CliError(Exception):
    """A failure the operator can act on; its message is printed as one line."""


PIPE_WIDTH = 160


def stdout() -> Console:
    """A console on standard output, for tables and readable results.

    Piped output gets a wide fixed width, so tables keep emails and secrets whole.
    """
    console = Console()
    if not console.is_terminal:
        console = Console(width=PIPE_WIDTH)
    return console


def stderr() -> Console:
    """A console on standard error, for progress and notes (never the JSON channel)."""
    return Console(stderr=True, soft_wrap=True)


def one_line(text: str) -> str:
    """Collapse a possibly multi-line message into one line."""
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip())


def fail(message: str) -> NoReturn:
    """Print `koppel: error: <message>` on stderr and exit with status 2."""
    print(f"koppel: error: {one_line(message)}", file=sys.stderr, flush=True)
    raise typer.Exit(EXIT_ERROR)


def _settings_problem(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        field = "_".join(str(part) for part in error["loc"][:1]) or "setting"
        problems.append(f"KOPPEL_{field.upper()}: {error['msg']}")
    return "invalid configuration: " + "; ".join(problems)


def _database_problem(exc: OperationalError) -> str:
    reason = one_line(str(exc.orig) if exc.orig is not None else str(exc))
    return f"database error: {reason}"


def handle_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn configuration, database and vault failures into one line and exit 2."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (CliError, ConfigError, VaultError) as exc:
            fail(str(exc))
        except ValidationError as exc:
            fail(_settings_problem(exc))
        except OperationalError as exc:
            fail(_database_problem(exc))

    return wrapper


def emit_json(document: Any) -> None:
    """Write exactly one JSON document to standard output."""
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
    sys.stdout.flush()
