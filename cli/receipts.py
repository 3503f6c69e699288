"""`koppel receipt verify`: check a signed consent receipt offline against the attestation
key set (a saved copy of `attestation_jwks_uri`, or the configured database's keys)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.context import load_settings, transaction
from cli.output import CliError, emit_json, handle_errors, stdout
from shared.attestation import AttestationError, attestation_jwks
from shared.receipts import verify_receipt

app = typer.Typer(help="Signed consent receipts.", no_args_is_help=True)

EXIT_INVALID = 1


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read the {what} in {path}: {exc}") from None


def _token(text: str) -> str:
    """The compact JWS of a file: the JWS itself, or a receipt list item's JSON."""
    text = text.strip()
    if text.startswith("{"):
        try:
            text = str(json.loads(text)["jws"])
        except (ValueError, KeyError, TypeError):
            raise CliError("the file holds JSON without a `jws` member") from None
    return text


def _key_set(jwks: Path | None) -> dict[str, Any]:
    if jwks is None:
        with transaction(load_settings()) as session:
            return attestation_jwks(session)
    try:
        document = json.loads(_read(jwks, "key set"))
    except ValueError:
        raise CliError(f"{jwks} is not a JSON key set") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise CliError(f"{jwks} is not a JWKS (an object with `keys`)")
    return document


@app.command("verify")
@handle_errors
def verify(
    file: Annotated[Path, typer.Argument(
        help="A consent receipt: its compact JWS, or a list item's JSON with `jws`.")],
    jwks: Annotated[Path | None, typer.Option(
        "--jwks", help="A saved attestation JWKS (the auth service's attestation_jwks_uri); "
        "default: the keys in the configured database.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Verify a receipt's signature, key and type (`consent-receipt+jwt`) and print its
    claims; a receipt that does not verify is reported and the exit status is 1."""
    token = _token(_read(file, "receipt"))
    keys = _key_set(jwks)
    try:
        kid, claims = verify_receipt(token, keys)
    except AttestationError as exc:
        if as_json:
            emit_json({"ok": False, "problem": str(exc)})
        print(f"koppel: the receipt does not verify: {exc}", file=sys.stderr, flush=True)
        raise typer.Exit(EXIT_INVALID) from None
    if as_json:
        emit_json({"ok": True, "kid": kid, "claims": claims})
        return
    out = stdout()
    out.print(f"consent receipt {claims.get('jti')} ({claims.get('act')}) verifies with "
              f"attestation key {kid}", soft_wrap=True)
    out.print_json(json.dumps(claims))
