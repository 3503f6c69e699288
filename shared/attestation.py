"""Attestation keys: Koppel's signature on statements it makes about itself (audit
checkpoints; consent receipts), never on tokens.

An attestation key is an ES256 key pair in `attestation_keys`, a table apart from the
token signing keys (shared/signing.py): the access-token verifier and the token JWKS
read only `signing_keys`, so a JWS made with an attestation key is never an access
token. The private half is sealed by the vault like a signing key's; every public half
stays published at the attestation JWKS for good (a statement may be checked years
later). `koppel keys rotate --attestation` makes a new active key.
"""

from __future__ import annotations

import json
from typing import Any, cast

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet
from sqlmodel import Session, col, select

from shared.db.types import utcnow
from shared.es256 import normalised_compact
from shared.models import AttestationKey
from shared.signing import jwks_document
from shared.vault import KeyRing, SecretBox
from shared.vault.columns import ATTESTATION_PRIVATE_KEY

ATTESTATION_ALG = "ES256"


class AttestationError(ValueError):
    """A statement that does not verify: bad signature, unknown key, wrong type."""


def create_attestation_key(session: Session, box: SecretBox) -> AttestationKey:
    """Generate an attestation key pair, seal the private half, make it the active key."""
    key = ECKey.generate_key("P-256", auto_kid=True)
    if key.kid is None:
        raise ValueError("the generated attestation key has no kid")
    public = {**key.as_dict(private=False), "alg": ATTESTATION_ALG, "use": "sig"}
    row = AttestationKey(kid=key.kid, alg=ATTESTATION_ALG, public_jwk=public,
                         private_key_ciphertext=b"", private_key_key_id="", active=True)
    ATTESTATION_PRIVATE_KEY.seal(box, row, key.as_pem(private=True))
    session.add(row)
    session.flush()
    return row


def active_attestation_key(session: Session, box: SecretBox) -> AttestationKey:
    """The newest active attestation key, made on first use."""
    stmt = (select(AttestationKey).where(col(AttestationKey.active))
            .order_by(col(AttestationKey.created_at).desc()).limit(1))
    row = session.exec(stmt).first()
    return row if row is not None else create_attestation_key(session, box)


def rotate_attestation_key_in(session: Session, box: SecretBox) -> str:
    """A new active attestation key; the old ones retire but stay published. Returns
    the new kid."""
    now = utcnow()
    old = session.exec(select(AttestationKey).where(col(AttestationKey.active))).all()
    new = create_attestation_key(session, box)
    for row in old:
        row.active, row.retired_at = False, now
        session.add(row)
    return new.kid


def attestation_jwks(session: Session) -> dict[str, Any]:
    """The JWKS of every attestation key ever made, newest first (never pruned)."""
    stmt = select(AttestationKey).order_by(col(AttestationKey.created_at).desc())
    return jwks_document(list(session.exec(stmt).all()))


def sign_attestation(session: Session, keys: KeyRing | SecretBox, typ: str,
                     claims: dict[str, Any]) -> str:
    """A compact JWS of `claims` with header typ `typ`, signed by the active attestation
    key (made on first use, in the session's transaction)."""
    box = keys if isinstance(keys, SecretBox) else SecretBox(keys)
    row = active_attestation_key(session, box)
    private = ECKey.import_key(ATTESTATION_PRIVATE_KEY.open(box, row))
    header = {"alg": ATTESTATION_ALG, "typ": typ, "kid": row.kid}
    # One spelling per statement, like Koppel's tokens (shared/es256.py).
    return normalised_compact(
        jws.serialize_compact(header, _payload(claims), private, algorithms=[ATTESTATION_ALG]))


def _payload(claims: dict[str, Any]) -> bytes:
    return json.dumps(claims, separators=(",", ":"), sort_keys=True).encode()


def verify_attestation(token: str, jwks: dict[str, Any], typ: str) -> tuple[str, dict[str, Any]]:
    """The kid and claims of a statement signed by one of `jwks`'s keys with header typ
    `typ`; AttestationError otherwise."""
    try:
        key_set = KeySet.import_key_set(cast(Any, jwks))  # joserfc types it as a TypedDict
        obj = jws.deserialize_compact(token.strip(), key_set, algorithms=[ATTESTATION_ALG])
        claims = json.loads(obj.payload)
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise AttestationError(f"the statement does not verify ({type(exc).__name__})") from None
    header = obj.headers()
    if header.get("typ") != typ:
        raise AttestationError(f"the statement's type is {header.get('typ')!r}, not {typ!r}")
    if not isinstance(claims, dict):
        raise AttestationError("the statement's payload is not a JSON object")
    return str(header.get("kid")), claims
