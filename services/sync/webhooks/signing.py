"""Standard Webhooks signing: `whsec_` secrets and `v1,` HMAC-SHA256 signatures, or
Ed25519 key pairs (`whpk_` public keys) and `v1a,` signatures."""

from __future__ import annotations

import base64
import hashlib
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
    mac = hmac.new(key, _signed(message_id, timestamp, body), hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def asymmetric_signature(key: Ed25519PrivateKey, message_id: str, timestamp: int,
                         body: bytes) -> str:
    """`v1a,` + base64 Ed25519 signature over `id.timestamp.body`."""
    return "v1a," + base64.b64encode(key.sign(_signed(message_id, timestamp, body))).decode()


def signed_headers(message_id: str, timestamp: int, body: bytes, keys: list[bytes],
                   ed25519_keys: list[Ed25519PrivateKey] | tuple = ()) -> dict[str, str]:
    """The three Standard Webhooks headers; one signature per key (the secrets' decoded
    HMAC keys or the Ed25519 private keys: two during a rotation's overlap)."""
    signatures = [signature(key, message_id, timestamp, body) for key in keys]
    signatures += [asymmetric_signature(key, message_id, timestamp, body)
                   for key in ed25519_keys]
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signatures),
        "content-type": "application/json",
        "user-agent": "Koppel-Webhooks/1",
    }
