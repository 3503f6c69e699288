"""JWT signing keys: ES256 for access tokens, RS256 for ID tokens.

Private keys live in `signing_keys`, sealed by the vault; the public halves form the
JWKS. A rotation adds a new active key per algorithm and keeps the retired public key
published until every token it signed has expired.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from sqlmodel import Session, col, or_, select

from shared.config import Settings
from shared.db.types import utcnow
from shared.es256 import normalised_compact
from shared.models import AttestationKey, SigningKey
from shared.vault import SecretBox
from shared.vault.columns import SIGNING_PRIVATE_KEY

ACCESS_TOKEN_ALG = "ES256"
ID_TOKEN_ALG = "RS256"
SUPPORTED_ALGS = (ACCESS_TOKEN_ALG, ID_TOKEN_ALG)
# What a client may register as `id_token_signed_response_alg`: the default, or ES256.
ID_TOKEN_ALGS = (ID_TOKEN_ALG, ACCESS_TOKEN_ALG)
# How long a signer trusts its cached view of the active keys before asking the database
# again, so a rotation made by another instance is picked up.
ACTIVE_KEY_CACHE_S = 30.0
PUBLISH_MARGIN = timedelta(minutes=5)

SigningKeyObject = ECKey | RSAKey


def _generate(alg: str) -> SigningKeyObject:
    if alg == "ES256":
        return ECKey.generate_key("P-256", auto_kid=True)
    if alg == "RS256":
        return RSAKey.generate_key(2048, auto_kid=True)
    raise ValueError(f"unsupported signing algorithm {alg!r}")


def create_signing_key(session: Session, box: SecretBox, alg: str) -> SigningKey:
    """Generate a key pair, seal the private half and add it as an active key."""
    key = _generate(alg)
    if key.kid is None:
        raise ValueError("the generated signing key has no kid")
    public = {**key.as_dict(private=False), "alg": alg, "use": "sig"}
    row = SigningKey(
        kid=key.kid,
        alg=alg,
        public_jwk=public,
        private_key_ciphertext=b"",
        private_key_key_id="",
        active=True,
    )
    SIGNING_PRIVATE_KEY.seal(box, row, key.as_pem(private=True))
    session.add(row)
    session.flush()
    return row


def ensure_signing_keys(session: Session, box: SecretBox) -> None:
    """Make an active key for each algorithm that has none (first start)."""
    for alg in SUPPORTED_ALGS:
        stmt = select(SigningKey.kid).where(SigningKey.alg == alg, col(SigningKey.active))
        if session.exec(stmt.limit(1)).first() is None:
            create_signing_key(session, box, alg)


def retire_publish_until(settings: Settings, now: datetime) -> datetime:
    """Until when a key retired `now` must stay in the JWKS."""
    longest = max(settings.access_token_ttl, settings.id_token_ttl)
    return now + timedelta(seconds=longest) + PUBLISH_MARGIN


def rotate_signing_keys_in(session: Session, box: SecretBox, settings: Settings) -> list[str]:
    """Add a new active key per algorithm and retire the old ones; returns the new kids."""
    now = utcnow()
    old = session.exec(select(SigningKey).where(col(SigningKey.active))).all()
    new_kids = [create_signing_key(session, box, alg).kid for alg in SUPPORTED_ALGS]
    for row in old:
        row.active = False
        row.retired_at = now
        row.publish_until = retire_publish_until(settings, now)
        session.add(row)
    return new_kids


def rotate_signing_keys(settings: Settings) -> list[str]:
    """`koppel keys rotate --signing`: rotate the signing keys of the configured database."""
    from shared.db.engine import create_sync_engine, sync_session_factory
    from shared.vault import load_keyring

    engine = create_sync_engine(settings.resolved_database_url)
    try:
        with sync_session_factory(engine)() as session, session.begin():
            return rotate_signing_keys_in(session, SecretBox(load_keyring(settings)), settings)
    finally:
        engine.dispose()


def published_keys(session: Session) -> list[SigningKey]:
    """The keys whose public half belongs in the JWKS: active ones and recently retired."""
    now = utcnow()
    stmt = (
        select(SigningKey)
        .where(or_(col(SigningKey.active), col(SigningKey.publish_until) > now))
        .order_by(col(SigningKey.created_at).desc())
    )
    return list(session.exec(stmt).all())


def jwks_document(keys: Sequence[SigningKey | AttestationKey]) -> dict[str, Any]:
    """The JWKS (RFC 7517) for the given keys."""
    return {"keys": [key.public_jwk for key in keys]}


class Signer:
    """Signs JWTs with the newest active key of each algorithm (thread-safe, cached)."""

    def __init__(self, box: SecretBox) -> None:
        self._box = box
        self._lock = threading.Lock()
        self._active: dict[str, tuple[str, SigningKeyObject]] = {}
        self._loaded_at = 0.0

    def _refresh(self, session: Session) -> None:
        stmt = (
            select(SigningKey)
            .where(col(SigningKey.active))
            .order_by(col(SigningKey.created_at).desc())
        )
        active: dict[str, tuple[str, SigningKeyObject]] = {}
        for row in session.exec(stmt).all():
            if row.alg in active:
                continue
            pem = SIGNING_PRIVATE_KEY.open(self._box, row)
            key_cls = ECKey if row.alg == "ES256" else RSAKey
            active[row.alg] = (row.kid, key_cls.import_key(pem))
        self._active = active
        self._loaded_at = time.monotonic()

    def _key(self, session: Session, alg: str) -> tuple[str, SigningKeyObject]:
        with self._lock:
            stale = time.monotonic() - self._loaded_at > ACTIVE_KEY_CACHE_S
            if stale or alg not in self._active:
                self._refresh(session)
            if alg not in self._active:
                ensure_signing_keys(session, self._box)
                self._refresh(session)
            return self._active[alg]

    def sign(self, session: Session, claims: dict[str, Any], *, alg: str, typ: str = "JWT") -> str:
        """A compact JWS of `claims` signed with the active `alg` key (ES256: low-S)."""
        kid, key = self._key(session, alg)
        token = jwt.encode({"alg": alg, "typ": typ, "kid": kid}, claims, key, algorithms=[alg])
        # One spelling per token: resource servers accept only the low-S form (es256.py).
        return normalised_compact(token) if alg == "ES256" else token

    def private_key(self, session: Session, alg: str) -> tuple[str, SigningKeyObject]:
        """The active key of `alg` with its kid (for Authlib's ID token generation)."""
        return self._key(session, alg)
