"""`koppel partner`: partners and their initial access tokens (docs/product.md section 5.1)."""

from __future__ import annotations

import uuid
from typing import Annotated

import typer
from sqlmodel import Session, select

from cli.context import load_settings, transaction
from cli.output import CliError, emit_json, handle_errors, stderr, stdout
from shared.db import utcnow
from shared.models import Partner
from shared.vault import TokenKind, load_keyring, new_token, token_digest

app = typer.Typer(help="Partners that register apps.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


def find_partner(session: Session, reference: str) -> Partner:
    """The partner whose id or exact name is `reference`."""
    try:
        partner = session.get(Partner, uuid.UUID(reference))
    except ValueError:
        partner = None
    if partner is not None:
        return partner
    matches = session.exec(select(Partner).where(Partner.name == reference)).all()
    if not matches:
        raise CliError(f"no partner with id or name {reference!r}")
    if len(matches) > 1:
        raise CliError(f"{len(matches)} partners are named {reference!r}: give the id")
    return matches[0]


@app.command("create")
@handle_errors
def create(
    name: Annotated[str, typer.Argument(help="The partner's name.")],
    as_json: JsonOption = False,
) -> None:
    """Create a partner and print its initial access token (shown once)."""
    name = name.strip()
    if not name:
        raise CliError("the partner name is empty")
    settings = load_settings()
    keyring = load_keyring(settings)
    token = new_token(TokenKind.INITIAL_ACCESS_TOKEN)
    with transaction(settings) as session:
        digest = token_digest(keyring.digest_key, token)
        partner = Partner(name=name, initial_access_token_digest=digest)
        session.add(partner)
    document = {
        "partner": {"id": str(partner.id), "name": partner.name},
        "initial_access_token": token,
    }
    if as_json:
        emit_json(document)
        return
    out = stdout()
    out.print(f"partner {partner.name} ({partner.id})")
    out.print(f"initial access token: {token}")
    stderr().print("The token is shown only now; Koppel keeps only its digest.")


@app.command("revoke-token")
@handle_errors
def revoke_token(
    partner_ref: Annotated[str, typer.Argument(metavar="PARTNER", help="Partner id or name.")],
    as_json: JsonOption = False,
) -> None:
    """Revoke a partner's initial access token, so it registers no more apps."""
    settings = load_settings()
    with transaction(settings) as session:
        partner = find_partner(session, partner_ref)
        had_token = partner.initial_access_token_digest is not None
        partner.initial_access_token_digest = None
        partner.updated_at = utcnow()
    if as_json:
        emit_json({"partner": {"id": str(partner.id), "name": partner.name}, "revoked": had_token})
        return
    state = "revoked" if had_token else "had no initial access token; nothing to revoke"
    stdout().print(f"partner {partner.name} ({partner.id}): {state}")
