"""ES256 signatures as JWS carries them (r || s): checking one, and one spelling per
signature that Koppel makes (issue 14, finding 9).

An ECDSA signature (r, s) is equally valid as (r, n - s), so a JWS signed by Koppel would
have two valid strings. Koppel's signer always writes the low-S form (s <= n / 2) and the
verifiers of the tokens Koppel issued accept only that form. DPoP proofs and client
assertions are signed by clients, whose libraries use either form: `verify` accepts
both, and only the token verifier adds the low-S rule.
"""

from __future__ import annotations

import base64

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

# The order of P-256's base point (SEC 2, secp256r1 "n").
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
HALF_ORDER = P256_ORDER // 2
SIZE = 32  # bytes of r and of s in a JWS signature (RFC 7518 3.4)
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())  # made once: verify runs on every API call


def verify(public: ec.EllipticCurvePublicKey, data: bytes, signature: bytes) -> None:
    """Check the JWS ES256 signature (r || s, 64 bytes) of `data` with `public` (OpenSSL
    through cryptography, as joserfc's ES256 does); InvalidSignature if it is not valid."""
    if len(signature) != 2 * SIZE:
        raise InvalidSignature
    public.verify(encode_dss_signature(int.from_bytes(signature[:SIZE], "big"),
                                       int.from_bytes(signature[SIZE:], "big")),
                  data, _ECDSA_SHA256)


def is_low_s(signature: bytes) -> bool:
    """Whether a JWS ES256 signature (r || s, 64 bytes) is in low-S form."""
    return len(signature) == 2 * SIZE and int.from_bytes(signature[SIZE:], "big") <= HALF_ORDER


def low_s(signature: bytes) -> bytes:
    """The low-S form of a JWS ES256 signature (r || s); unchanged if it already is."""
    s = int.from_bytes(signature[SIZE:], "big")
    if s <= HALF_ORDER:
        return signature
    return signature[:SIZE] + (P256_ORDER - s).to_bytes(SIZE, "big")


def jws_signature(der: bytes) -> bytes:
    """A DER ECDSA signature (what `cryptography` makes) as a low-S JWS signature."""
    r, s = decode_dss_signature(der)
    return low_s(r.to_bytes(SIZE, "big") + s.to_bytes(SIZE, "big"))


def _b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def normalised_compact(token: str) -> str:
    """A compact ES256 JWS with its signature in low-S form."""
    signing_input, _, signature_b64 = token.rpartition(".")
    signature = _b64url_decode(signature_b64)
    if is_low_s(signature):
        return token
    encoded = base64.urlsafe_b64encode(low_s(signature)).rstrip(b"=").decode()
    return f"{signing_input}.{encoded}"


def is_canonical(signature_b64: str) -> bool:
    """Whether the signature segment of a compact ES256 JWS is its one accepted spelling:
    unpadded base64url that encodes back to itself, of a low-S signature."""
    try:
        signature = _b64url_decode(signature_b64)
    except ValueError:
        return False
    encoded = base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    return encoded == signature_b64 and is_low_s(signature)
