"""`koppel keys rotate`: a new active encryption key and re-encryption
(docs/product.md section 6); `--signing` and `--attestation` rotate the JWT signing
keys and the attestation key instead."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cli.context import engine_for, load_settings, transaction
from cli.output import CliError, emit_json, handle_errors, stderr, stdout
from shared.config import Settings
from shared.db import sync_session_factory
from shared.vault import KeyRing, SecretBox, add_key_to_file, load_keyring
from shared.vault.rotate import pending_rows, reencrypt

app = typer.Typer(help="Encryption and signing keys.", no_args_is_help=True)


def activate_new_key(settings: Settings, *, resume: bool) -> KeyRing:
    """The ring to re-encrypt under: a fresh key in the key file, or the configured one.

    Keys from KOPPEL_KEYS are the operator's to add; then the configured active key is
    the newest, and this only re-encrypts.
    """
    ring = load_keyring(settings)
    if ring.source is None or resume:
        return ring
    return add_key_to_file(ring)


def reencrypt_all(settings: Settings, ring: KeyRing, *, batch_size: int) -> int:
    """Re-seal every encrypted value under the ring's active key, with a progress bar."""
    with engine_for(settings) as engine:
        factory = sync_session_factory(engine)
        with factory() as session:
            total = pending_rows(session, ring.active_key_id)
        columns = [
            TextColumn("re-encrypting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        ]
        done = 0
        with Progress(*columns, console=stderr(), transient=False) as progress:
            task = progress.add_task("re-encrypt", total=total)
            for batch in reencrypt(factory, SecretBox(ring), batch_size=batch_size):
                done += batch.rows
                # Rows written meanwhile can make the count grow past the first total.
                progress.update(task, completed=done, total=max(total, done))
    return done


def rotate_signing(settings: Settings) -> list[str]:
    """Add new signing keys and retire the old ones (shared.signing); returns the new kids."""
    # Imported here: only this option needs the JWT machinery.
    from shared.signing import rotate_signing_keys

    return list(rotate_signing_keys(settings))


def rotate_attestation(settings: Settings) -> str:
    """Add a new active attestation key (shared.attestation); returns its kid."""
    from shared.attestation import rotate_attestation_key_in

    with transaction(settings) as session:
        return rotate_attestation_key_in(session, SecretBox(load_keyring(settings)))


@app.command("rotate")
@handle_errors
def rotate(
    signing: Annotated[
        bool, typer.Option("--signing", help="Rotate the JWT signing keys instead.")
    ] = False,
    attestation: Annotated[
        bool, typer.Option("--attestation",
                           help="Rotate the attestation key (audit checkpoints) instead."),
    ] = False,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Add no key; finish re-encrypting under the active one."),
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Rows per transaction.")] = 500,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Make the newest encryption key active and re-encrypt stored secrets; resumable."""
    settings = load_settings()
    if signing and attestation:
        raise CliError("--signing and --attestation rotate different keys: pick one")
    if attestation:
        kid = rotate_attestation(settings)
        if as_json:
            emit_json({"new_attestation_key": kid})
        else:
            stdout().print(f"new attestation key: {kid}; the old public keys stay published "
                           "at the attestation JWKS for good")
        return
    if signing:
        new_kids = rotate_signing(settings)
        if as_json:
            emit_json({"new_signing_keys": new_kids})
        else:
            stdout().print(
                f"new signing keys: {', '.join(new_kids)}; the old public keys stay in "
                "the JWKS until the tokens they signed have expired"
            )
        return
    ring = activate_new_key(settings, resume=resume)
    count = reencrypt_all(settings, ring, batch_size=batch_size)
    if as_json:
        emit_json({"active_key_id": ring.active_key_id, "reencrypted": count})
    else:
        stdout().print(f"active key {ring.active_key_id}; re-encrypted {count} value(s)")
