"""`koppel receipt verify` against the configured database's attestation keys: a receipt
made by the builder verifies and its claims are printed; a statement of another type
signed by the same key, and a receipt whose signature was cut, are refused (exit 1)."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from shared import receipts
from shared.attestation import sign_attestation
from shared.models import UserTemplate
from shared.receipts import Act
from shared.vault import KeyRing
from tests.cli.conftest import Invoke
from tests.fixtures.factories import (
    make_app,
    make_company,
    make_connection,
    make_debtor,
    make_environment,
    make_user,
)


def test_a_receipt_verifies_against_the_database_keys_and_others_do_not(
    invoke: Invoke, committing_sessions: sessionmaker[Session], keyring: KeyRing,
    tmp_path: Path,
) -> None:
    with committing_sessions() as session:
        environment = make_environment(session)
        debtor = make_debtor(session, environment)
        company = make_company(session, debtor)
        user = make_user(session, environment, template=UserTemplate.MASTER_CLIENT, debtor=debtor,
                         companies=[company])
        app = make_app(session, scopes=["company.info.read"])
        connection = make_connection(session, user, app, companies=[company])
        receipt = receipts.issue(session, connection, Act.GRANTED, f"user:{user.id}",
                                 lang="en", keys=keyring)
        other = sign_attestation(session, keyring, "audit-checkpoint+jwt", {"seq": 1})
        session.commit()

    good = tmp_path / "receipt.json"  # a list item as the registry answers it
    good.write_text(json.dumps({"id": str(receipt.id), "jws": receipt.jws}))
    result = invoke("receipt", "verify", str(good), "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["ok"] and document["kid"] == receipt.kid
    assert document["claims"]["jti"] == str(receipt.id)
    assert document["claims"]["companies"] == [{"id": str(company.id), "name": company.name}]

    wrong_type = tmp_path / "checkpoint.jws"
    wrong_type.write_text(other)
    refused = invoke("receipt", "verify", str(wrong_type))
    assert refused.exit_code == 1
    assert "consent-receipt+jwt" in refused.stderr

    cut = tmp_path / "cut.jws"
    cut.write_text(receipt.jws[:-8])
    refused = invoke("receipt", "verify", str(cut))
    assert refused.exit_code == 1 and "does not verify" in refused.stderr

    missing = invoke("receipt", "verify", str(tmp_path / "nothing.jws"))
    assert missing.exit_code == 2 and "cannot read" in missing.stderr
