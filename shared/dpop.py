"""DPoP proofs (RFC 9449): checking one, server nonces, and the WWW-Authenticate challenge.

The auth service checks the proof of a token request (section 5); registry and sync check
the proof of every call with a DPoP-bound access token (section 7), through the shared
dependency (shared/auth_deps.py). A proof is accepted only if, per section 4.3, it is one
compact JWS (parsed and verified by joserfc) typed `dpop+jwt`, signed with ES256, PS256 or
EdDSA (Ed25519) by the public key in its `jwk` header (never `none`, never a MAC, never a
key with private parts), for this request's method (`htm`) and URL (`htu`, compared to
the service's configured public URL, never to a Host header, after RFC 3986 syntax and
scheme normalisation, query and fragment ignored), created within the window (`iat`),
with a `jti` not seen before within that window (kept in Redis), with the access token's
hash (`ath`) at a resource server, and with a current server nonce when nonces are on.

A client usually keeps its key for many proofs, so the imported key, its thumbprint and
a ready signature check are cached per proof header: the check then costs one signature
verification. For ES256, the common case, that check is shared/es256.py's `verify` (the
steps of joserfc's own ES256 verification, with the ECDSA parameters made once: 15 us
less per proof, measured interleaved in one process); the other algorithms go through
joserfc's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any
from urllib.parse import urlsplit

import orjson
from cryptography.exceptions import InvalidSignature
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry, OKPKey, RSAKey
from joserfc.util import urlsafe_b64decode
from redis.asyncio import Redis

from shared import es256
from shared.config import Settings

# What discovery advertises (`dpop_signing_alg_values_supported`) and the 401 challenges
# name; `Ed25519` is the fully-specified name (RFC 9864) of `EdDSA` with an Ed25519 key.
DPOP_ALGS: tuple[str, ...] = ("ES256", "PS256", "EdDSA", "Ed25519")
PROOF_TYPE = "dpop+jwt"
HEADER = "DPoP"
NONCE_HEADER = "DPoP-Nonce"
INVALID_PROOF = "invalid_dpop_proof"
USE_NONCE = "use_dpop_nonce"
MAX_PROOF_LENGTH = 8192
MAX_JTI_LENGTH = 256
MIN_RSA_BITS = 2048
MAX_CACHED_KEYS = 512
# (kty, crv) each algorithm takes; crv None: any size of RSA of at least MIN_RSA_BITS.
_KEY_TYPES: dict[str, tuple[str, str | None]] = {
    "ES256": ("EC", "P-256"), "PS256": ("RSA", None),
    "EdDSA": ("OKP", "Ed25519"), "Ed25519": ("OKP", "Ed25519"),
}
# Members of a JWK that only a private (or symmetric) key has (RFC 7518 section 6).
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_REGISTRY = jws.JWSRegistry(algorithms=list(DPOP_ALGS))
# A proof header holds a whole public key: a 4096-bit RSA modulus is 683 characters.
_REGISTRY.max_header_length = 2048
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# A ready check of one key: (signing input, signature); InvalidSignature if not valid.
Verify = Callable[[bytes, bytes], None]


class DPoPError(Exception):
    """A proof that is not acceptable (`invalid_dpop_proof`), or one without the current
    server nonce (`use_dpop_nonce`)."""

    def __init__(self, description: str, error: str = INVALID_PROOF) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


@dataclass(frozen=True, slots=True)
class Proof:
    """A verified proof: the key's RFC 7638 thumbprint (`jkt`) and its `jti`."""

    jkt: str
    jti: str


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def token_hash(access_token: str) -> str:
    """The `ath` of an access token: base64url(SHA-256(token))."""
    return b64url(hashlib.sha256(access_token.encode("ascii", "replace")).digest())


def _decode_percent(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()


def _remove_dot_segments(path: str) -> str:
    if "." not in path:
        return path
    out: list[str] = []
    segments = path.split("/")[1:]
    for segment in segments:
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            out.append(segment)
    if segments and segments[-1] in (".", ".."):
        out.append("")
    return "/" + "/".join(out)


@lru_cache(maxsize=1024)
def normalized_url(url: str) -> str | None:
    """`url` without query and fragment, after RFC 3986 syntax- and scheme-based
    normalisation (section 6.2.2, 6.2.3): lower-case scheme and host, no default port,
    percent-encodings in upper case and unreserved characters decoded, no dot segments,
    an empty path as `/`. None if it is not an absolute http(s) URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in _DEFAULT_PORTS or not host or parts.username or parts.password:
        return None
    if ":" in host:
        host = f"[{host}]"
    authority = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = _remove_dot_segments(_PERCENT.sub(_decode_percent, parts.path or "/"))
    return f"{scheme}://{authority}{path or '/'}"


def _public_key(jwk: Any, alg: str) -> tuple[Any, str]:
    """The joserfc key of a proof's `jwk` header and its thumbprint; DPoPError if it is
    not a public key of the kind `alg` takes."""
    if not isinstance(jwk, dict):
        raise DPoPError("the proof's header has no jwk")
    if _PRIVATE_MEMBERS & jwk.keys():
        raise DPoPError("the proof's jwk holds a private key")
    kty, crv = _KEY_TYPES[alg]
    if jwk.get("kty") != kty or (crv is not None and jwk.get("crv") != crv):
        raise DPoPError(f"the proof's jwk is not a key for {alg}")
    try:
        key = JWKRegistry.import_key(jwk)
    except (JoseError, ValueError, TypeError, KeyError):
        raise DPoPError("the proof's jwk is not a valid key") from None
    if not isinstance(key, (ECKey, RSAKey, OKPKey)) or key.is_private:
        raise DPoPError("the proof's jwk holds a private key")
    if isinstance(key, RSAKey) and key.raw_value.key_size < MIN_RSA_BITS:
        raise DPoPError(f"the proof's RSA key is shorter than {MIN_RSA_BITS} bits")
    return key, key.thumbprint()


def _verify_function(algorithm: Any, key: Any) -> Verify:
    """The signature check of `key` for `algorithm`, made once per cached key."""
    if algorithm.name == "ES256":
        return partial(es256.verify, key.public_key)

    def verify(data: bytes, signature: bytes) -> None:
        if not algorithm.verify(data, signature, key):
            raise InvalidSignature

    return verify


def nonce_for(key: bytes, window: int) -> str:
    """The server nonce of time window number `window` (stateless: HMAC of the number)."""
    return b64url(hmac.new(key, b"koppel-dpop-nonce:%d" % window, hashlib.sha256).digest()[:18])


class ProofChecker:
    """Checks DPoP proofs for one service; one per process."""

    def __init__(self, *, max_age: int = 60, max_skew: int = 5, nonce_key: bytes | None = None,
                 nonce_required: bool = False, nonce_lifetime: int = 300) -> None:
        if nonce_required and nonce_key is None:
            raise ValueError("server nonces need a key")
        self.max_age, self.max_skew = max_age, max_skew
        self.nonce_required, self.nonce_lifetime = nonce_required, nonce_lifetime
        self._nonce_key = nonce_key or b""
        # A jti is remembered as long as a proof carrying it could still be accepted.
        self.jti_ttl = max_age + max_skew + 1
        self._keys: OrderedDict[bytes, tuple[Verify, str]] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: Settings, nonce_key: bytes) -> ProofChecker:
        return cls(max_age=settings.dpop_proof_max_age, max_skew=settings.dpop_proof_max_skew,
                   nonce_key=nonce_key, nonce_required=settings.dpop_nonce_required,
                   nonce_lifetime=settings.dpop_nonce_lifetime)

    def nonce(self, now: float | None = None) -> str:
        """The current server nonce (a new one every `nonce_lifetime` seconds)."""
        window = int((time.time() if now is None else now) // self.nonce_lifetime)
        return nonce_for(self._nonce_key, window)

    def _nonce_ok(self, value: Any, now: float) -> bool:
        if not isinstance(value, str):
            return False
        window = int(now // self.nonce_lifetime)
        return any(hmac.compare_digest(value, nonce_for(self._nonce_key, w))
                   for w in (window, window - 1))

    def _key(self, header_segment: bytes, header: dict[str, Any]) -> tuple[Verify, str]:
        """(signature check, jkt) of a proof header, checked once and cached per header
        (a client signs its proofs with one key)."""
        cached = self._keys.get(header_segment)
        if cached is not None:
            self._keys.move_to_end(header_segment)  # least recently used goes first
            return cached
        if set(header) - {"typ", "alg", "jwk"}:
            # No kid, x5c, jku or crit: the key is the jwk, and nothing else is needed.
            raise DPoPError("the proof's header has members other than typ, alg and jwk")
        typ, alg = header.get("typ"), header.get("alg")
        if not isinstance(typ, str) or typ.lower() != PROOF_TYPE:
            raise DPoPError(f"the proof's typ must be {PROOF_TYPE}")
        if not isinstance(alg, str) or alg not in _KEY_TYPES:
            raise DPoPError(f"the proof's alg must be one of {', '.join(DPOP_ALGS)}")
        key, jkt = _public_key(header.get("jwk"), alg)
        try:
            _REGISTRY.check_header(header)
            with warnings.catch_warnings():
                # joserfc warns that `EdDSA` has a fully-specified successor; both are fine.
                warnings.simplefilter("ignore")
                algorithm = _REGISTRY.get_alg(alg)
            algorithm.check_key(key)
        except (JoseError, ValueError):
            raise DPoPError(f"the proof's jwk is not a key for {alg}") from None
        try:
            # What joserfc's verification asks of the key on every call (`get_op_key`),
            # asked once here, since the check made below uses the key directly.
            key.check_key_op("verify")
        except JoseError:
            raise DPoPError("the proof's jwk does not allow verify (key_ops)") from None
        if len(self._keys) >= MAX_CACHED_KEYS:
            self._keys.popitem(last=False)
        self._keys[header_segment] = found = (_verify_function(algorithm, key), jkt)
        return found

    def check(self, proof: str, *, method: str, url: str, access_token: str | None = None,
              now: float | None = None) -> Proof:
        """The verified proof for a request of `method` to `url` (the public URL; its query
        is ignored), carrying `access_token`'s hash if one is given. DPoPError if it is
        not acceptable. The `jti` is not reserved here (`reserve`)."""
        now = time.time() if now is None else now
        if not proof or len(proof) > MAX_PROOF_LENGTH:
            raise DPoPError("the DPoP proof is missing or too long")
        try:
            obj = jws.extract_compact(proof.encode("ascii"), registry=_REGISTRY)
        except (JoseError, ValueError, UnicodeError):
            raise DPoPError("the DPoP proof is not a compact JWS") from None
        segments = obj.segments
        verify, jkt = self._key(segments["header"], obj.headers())
        try:
            # The signature alone: `_key` made joserfc's header checks once for this header.
            verify(segments["header"] + b"." + segments["payload"],
                   urlsafe_b64decode(segments["signature"]))
        except (InvalidSignature, JoseError, ValueError, binascii.Error):
            raise DPoPError("the DPoP proof's signature is not valid") from None
        try:
            claims = orjson.loads(obj.payload)
        except orjson.JSONDecodeError:
            raise DPoPError("the DPoP proof's claims are not JSON") from None
        if not isinstance(claims, dict):
            raise DPoPError("the DPoP proof's claims are not a JSON object")
        jti, iat = claims.get("jti"), claims.get("iat")
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH:
            raise DPoPError("the DPoP proof lacks a valid jti")
        if claims.get("htm") != method:
            raise DPoPError(f"the DPoP proof is not for {method} (htm)")
        htu = claims.get("htu")
        if not isinstance(htu, str) or normalized_url(htu) != normalized_url(url) \
                or normalized_url(url) is None:
            raise DPoPError("the DPoP proof is not for this URL (htu)")
        if isinstance(iat, bool) or not isinstance(iat, (int, float)) or not math.isfinite(iat):
            # NaN and infinities compare false both ways: they would pass the window.
            raise DPoPError("the DPoP proof lacks a valid iat")
        if iat < now - self.max_age or iat > now + self.max_skew:
            raise DPoPError("the DPoP proof was not created just now (iat)")
        if access_token is not None:
            ath = claims.get("ath")
            if not isinstance(ath, str) or not hmac.compare_digest(ath, token_hash(access_token)):
                raise DPoPError("the DPoP proof is not for this access token (ath)")
        if self.nonce_required and not self._nonce_ok(claims.get("nonce"), now):
            raise DPoPError("a current DPoP-Nonce is required in the proof", USE_NONCE)
        return Proof(jkt, jti)

    def jti_key(self, proof: Proof) -> str:
        """The Redis key that reserves the proof's jti (for `jti_ttl` seconds)."""
        return f"koppel:dpop:jti:{proof.jkt}:{proof.jti}"

    async def reserve(self, redis: Redis, proof: Proof) -> None:
        """Record the proof's jti; DPoPError if it was seen within the window (a replay).
        Redis errors propagate (the caller answers 503)."""
        if not await redis.set(self.jti_key(proof), b"1", ex=self.jti_ttl, nx=True):
            raise DPoPError("this DPoP proof was used before (jti)")


def only_proof(values: list[str]) -> str | None:
    """The one DPoP header of a request, None if there is none; DPoPError for several
    (section 4.3: exactly one)."""
    if not values:
        return None
    if len(values) > 1:
        raise DPoPError("send exactly one DPoP header")
    return values[0]

