"""Signed JWTs the load generator sends, built in bulk before a timed window: DPoP proofs
(RFC 9449) and private_key_jwt client assertions (RFC 7523), ES256 with `cryptography`
directly (the header segment encoded once per key, one ECDSA signature per JWT)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_ECDSA = ec.ECDSA(hashes.SHA256())


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _dumps(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def ath(access_token: str) -> str:
    return b64url(hashlib.sha256(access_token.encode()).digest())


class EcKey:
    """A P-256 key pair (a new one, or `private`): its public JWK, RFC 7638 thumbprint and
    fast compact ES256 JWTs."""

    def __init__(self, kid: str | None = None,
                 private: ec.EllipticCurvePrivateKey | None = None) -> None:
        self.private = private or ec.generate_private_key(ec.SECP256R1())
        numbers = self.private.public_key().public_numbers()
        self.public_jwk: dict[str, str] = {
            "kty": "EC", "crv": "P-256", "x": b64url(numbers.x.to_bytes(32, "big")),
            "y": b64url(numbers.y.to_bytes(32, "big"))}
        canonical = _dumps({m: self.public_jwk[m] for m in ("crv", "kty", "x", "y")})
        self.jkt = b64url(hashlib.sha256(canonical).digest())
        self.kid = kid or self.jkt
        self._dpop_header = b64url(_dumps({"typ": "dpop+jwt", "alg": "ES256",
                                           "jwk": self.public_jwk}))
        self._assertion_header = b64url(_dumps({"alg": "ES256", "kid": self.kid}))

    @property
    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [{**self.public_jwk, "kid": self.kid, "alg": "ES256", "use": "sig"}]}

    def _sign(self, header: str, claims: dict[str, Any]) -> str:
        signing_input = f"{header}.{b64url(_dumps(claims))}"
        r, s = decode_dss_signature(self.private.sign(signing_input.encode(), _ECDSA))
        return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def dpop_proof(self, method: str, url: str, access_token: str | None = None,
                   now: int | None = None) -> str:
        """A proof for `method` `url` (no query), with a fresh jti, iat now and, with an
        access token, its hash (`ath`)."""
        claims: dict[str, Any] = {"jti": secrets.token_urlsafe(12), "htm": method, "htu": url,
                                  "iat": int(time.time()) if now is None else now}
        if access_token is not None:
            claims["ath"] = ath(access_token)
        return self._sign(self._dpop_header, claims)

    def assertion(self, client_id: str, audience: str, now: int | None = None) -> str:
        """A private_key_jwt client assertion good for 60 s, with a fresh jti."""
        now = int(time.time()) if now is None else now
        return self._sign(self._assertion_header, {
            "iss": client_id, "sub": client_id, "aud": audience, "iat": now, "exp": now + 60,
            "jti": secrets.token_urlsafe(12)})
