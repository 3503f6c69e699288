"""`koppel audit verify`: check every environment's hash-chained audit log."""

from __future__ import annotations

import uuid
from typing import Annotated

import typer
from sqlmodel import select

from cli.context import load_settings, transaction
from cli.output import CliError, emit_json, handle_errors, stdout
from shared.audit import verify_environment
from shared.models import AuditEvent, AuditHead

app = typer.Typer(help="The audit log.", no_args_is_help=True)

EXIT_FAULTS = 1


@app.command("verify")
@handle_errors
def verify(
    environment: Annotated[str | None, typer.Option(
        "--environment", help="Check only this environment (id).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Recompute every audit chain; an edited, inserted or deleted event is reported and
    the exit status is 1."""
    settings = load_settings()
    with transaction(settings) as session:
        if environment is not None:
            try:
                environment_ids = [uuid.UUID(environment)]
            except ValueError:
                raise CliError(f"not an environment id: {environment!r}") from None
        else:
            environment_ids = sorted(
                set(session.exec(select(AuditHead.environment_id)).all())
                | set(session.exec(select(AuditEvent.environment_id).distinct()).all())
            )
        faults = [fault for env in environment_ids for fault in verify_environment(session, env)]
    document = {
        "environments": len(environment_ids),
        "ok": not faults,
        "faults": [{"environment_id": str(f.environment_id), "seq": f.seq, "problem": f.problem}
                   for f in faults],
    }
    if as_json:
        emit_json(document)
    else:
        out = stdout()
        for fault in faults:
            out.print(f"environment {fault.environment_id} seq {fault.seq}: {fault.problem}")
        out.print(f"{len(environment_ids)} environment(s) checked: "
                  + ("the audit log is intact" if not faults else f"{len(faults)} fault(s)"))
    if faults:
        raise typer.Exit(EXIT_FAULTS)
