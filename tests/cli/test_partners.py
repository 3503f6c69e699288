"""`koppel partner create` and `koppel partner revoke-token`."""

from __future__ import annotations

import json
import uuid

from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from shared.models import Partner
from shared.vault import KeyRing, digest_matches
from tests.cli.conftest import Invoke


def _partner(sessions: sessionmaker[Session], partner_id: str) -> Partner:
    with sessions() as session:
        partner = session.get(Partner, uuid.UUID(partner_id))
        assert partner is not None
        return partner


def test_create_prints_the_token_once_and_stores_only_its_digest(
    invoke: Invoke, committing_sessions: sessionmaker[Session], keyring: KeyRing
) -> None:
    result = invoke("partner", "create", "Acme Payroll Apps", "--json")

    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) == {"partner", "initial_access_token"}
    assert document["partner"]["name"] == "Acme Payroll Apps"
    token = document["initial_access_token"]
    assert token.startswith("kpiat_")
    stored = _partner(committing_sessions, document["partner"]["id"])
    assert stored.initial_access_token_digest != token
    assert digest_matches(keyring.digest_key, token, stored.initial_access_token_digest)


def test_revoke_token_by_name_or_id_clears_the_digest(
    invoke: Invoke, committing_sessions: sessionmaker[Session]
) -> None:
    by_name = json.loads(invoke("partner", "create", "Revoked By Name", "--json").stdout)
    by_id = json.loads(invoke("partner", "create", "Revoked By Id", "--json").stdout)

    assert invoke("partner", "revoke-token", "Revoked By Name").exit_code == 0
    result = invoke("partner", "revoke-token", by_id["partner"]["id"], "--json")

    assert json.loads(result.stdout)["revoked"] is True
    for document in (by_name, by_id):
        partner = _partner(committing_sessions, document["partner"]["id"])
        assert partner.initial_access_token_digest is None
    again = invoke("partner", "revoke-token", by_id["partner"]["id"], "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["revoked"] is False


def test_an_unknown_or_ambiguous_partner_is_one_line_and_exit_2(invoke: Invoke) -> None:
    invoke("partner", "create", "Twin", "--json")
    invoke("partner", "create", "Twin", "--json")

    for reference, reason in (("nobody", "no partner"), ("Twin", "give the id")):
        result = invoke("partner", "revoke-token", reference)
        assert result.exit_code == 2
        assert result.stdout == ""
        assert result.stderr.startswith("koppel: error: ") and reason in result.stderr
        assert result.stderr.count("\n") == 1
