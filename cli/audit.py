"""`koppel audit`: verify the MAC-chained audit log and make signed checkpoints of it."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Annotated, Any

import structlog
import typer
from sqlmodel import select

from cli.context import load_settings, transaction
from cli.output import CliError, emit_json, handle_errors, stdout
from shared.audit_checkpoints import HeadNotSound, make_checkpoint
from shared.audit_mac import current_keyring
from shared.audit_verify import parse_checkpoint_file, verify_audit_log
from shared.models import AuditHead

app = typer.Typer(help="The audit log.", no_args_is_help=True)

EXIT_FAULTS = 1


def _environment_id(value: str | None) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise CliError(f"not an environment id: {value!r}") from None


def _file_tokens(path: Path | None) -> list[str]:
    if path is None:
        return []
    try:
        return parse_checkpoint_file(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CliError(f"cannot read the checkpoints in {path}: {exc}") from None


def _stderr_log() -> Any:
    """A structured (JSON) logger on standard error, as the services log: stdout carries
    only the JWSs. Local to the command; the process's logging is left as it is."""
    return structlog.wrap_logger(
        structlog.PrintLogger(sys.stderr),
        processors=[structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso", utc=True),
                    structlog.processors.JSONRenderer()],
    ).bind(service="cli")


@app.command("verify")
@handle_errors
def verify(
    environment: Annotated[str | None, typer.Option(
        "--environment", help="Check only this environment (id).")] = None,
    checkpoints: Annotated[Path | None, typer.Option(
        "--checkpoints", help="Also check these checkpoints: a file of JWSs, one per line, "
        "or the JSON of GET /v1/environment/audit-checkpoints.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Recompute every audit chain's MACs and check it against its head and the signed
    checkpoints; an edited, inserted or deleted event, a missing head or a checkpointed
    seq that is missing or carries another hash is reported and the exit status is 1."""
    settings = load_settings()
    environment_id = _environment_id(environment)
    tokens = _file_tokens(checkpoints)
    with transaction(settings) as session:
        report = verify_audit_log(session, current_keyring(), environment_id=environment_id,
                                  file_tokens=tokens)
    document = {
        "environments": report.environments,
        "events": report.events,
        "checkpoints": report.checkpoints,
        "ok": report.ok,
        "faults": [{"environment_id": str(f.environment_id), "seq": f.seq, "problem": f.problem}
                   for f in report.faults],
    }
    if as_json:
        emit_json(document)
    else:
        out = stdout()
        for fault in report.faults:
            out.print(f"environment {fault.environment_id} seq {fault.seq}: {fault.problem}")
        out.print(f"{report.environments} environment(s), {report.events} event(s), "
                  f"{report.checkpoints} checkpoint(s) checked: "
                  + ("the audit log is intact" if report.ok
                     else f"{len(report.faults)} fault(s)"))
    if not report.ok:
        raise typer.Exit(EXIT_FAULTS)


@app.command("checkpoint")
@handle_errors
def checkpoint(
    environment: Annotated[str | None, typer.Option(
        "--environment", help="Only this environment (id); default: every chain.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Sign each chain's current head now (a compact JWS under the attestation key),
    store it and print it; keep the output outside Koppel for `verify --checkpoints`."""
    settings = load_settings()
    environment_id = _environment_id(environment)
    with transaction(settings) as session:
        if environment_id is not None:
            environment_ids = [environment_id]
        else:
            environment_ids = sorted(session.exec(
                select(AuditHead.environment_id).where(AuditHead.seq > 0)).all())
        ring, log = current_keyring(), _stderr_log()
        made = []
        for env in environment_ids:
            try:
                row = make_checkpoint(session, ring, env, logger=log)
            except HeadNotSound as exc:
                raise CliError(f"{exc}: run `koppel audit verify`") from None
            if row is not None:
                made.append(row)
        document = [{"environment_id": str(r.environment_id), "seq": r.seq, "hash": r.hash,
                     "kid": r.kid, "jws": r.jws} for r in made]
    if as_json:
        emit_json({"checkpoints": document})
        return
    out = stdout()
    for item in document:
        out.print(item["jws"], soft_wrap=True)
    if not document:
        out.print("no audit chain to checkpoint")
