"""Standard Webhooks signing: `whsec_` secrets and `v1,` HMAC-SHA256 signatures, or
Ed25519 key pairs (`whpk_` public keys) and `v1a,` signatures."""

from __future__ import annotations

import base64
import hmac
import secrets

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

SECRET_PREFIX = "whsec_"
PUBLIC_KEY_PREFIX = "whpk_"
SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh signing secret: `whsec_` + standard base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret: the base64-decoded part after `whsec_`."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def new_key_pair() -> tuple[bytes, str]:
    """A fresh Ed25519 key pair: the raw 32-byte private key (to seal) and the public
    key as Standard Webhooks shows it, `whpk_` + standard base64 of its 32 raw bytes."""
    key = Ed25519PrivateKey.generate()
    return key.private_bytes_raw(), public_key_text(key)


def public_key_text(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return PUBLIC_KEY_PREFIX + base64.b64encode(raw).decode()


def private_key(raw: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(raw)


def jwk(public_key: str) -> dict[str, str]:
    """A `whpk_` key as a JWK (RFC 8037: OKP, Ed25519)."""
    raw = base64.b64decode(public_key.removeprefix(PUBLIC_KEY_PREFIX))
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "alg": "EdDSA", "use": "sig"}


def _signed(message_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{message_id}.{timestamp}.".encode() + body


def signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,` + base64 HMAC-SHA256 over `id.timestamp.body`."""
    return _hmac_signature(key, _signed(message_id, timestamp, body))


def _hmac_signature(key: bytes, signed: bytes) -> str:
    # hmac.digest: OpenSSL's one-shot HMAC, no Python HMAC object per message.
    return "v1," + base64.b64encode(hmac.digest(key, signed, "sha256")).decode()


def asymmetric_signature(key: Ed25519PrivateKey, message_id: str, timestamp: int,
                         body: bytes) -> str:
    """`v1a,` + base64 Ed25519 signature over `id.timestamp.body`."""
    return _ed25519_signature(key, _signed(message_id, timestamp, body))


def _ed25519_signature(key: Ed25519PrivateKey, signed: bytes) -> str:
    return "v1a," + base64.b64encode(key.sign(signed)).decode()


def signed_headers(message_id: str, timestamp: int, body: bytes, keys: list[bytes],
                   ed25519_keys: list[Ed25519PrivateKey] | tuple = ()) -> dict[str, str]:
    """The three Standard Webhooks headers; one signature per key (the secrets' decoded
    HMAC keys or the Ed25519 private keys: two during a rotation's overlap). The signed
    bytes are put together once for all of them."""
    stamp = str(timestamp)
    signed = f"{message_id}.{stamp}.".encode() + body
    signatures = [_hmac_signature(key, signed) for key in keys]
    signatures += [_ed25519_signature(key, signed) for key in ed25519_keys]
    return {
        "webhook-id": message_id,
        "webhook-timestamp": stamp,
        "webhook-signature": " ".join(signatures),
        "content-type": "application/json",
        "user-agent": "Koppel-Webhooks/1",
    }
