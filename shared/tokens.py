"""Access-token verification for resource servers (docs/product.md 5.3, RFC 9068).

A token is accepted only if it is a compact JWS signed with ES256 by a published key
(its signature in the low-S form that Koppel's signer writes, shared/es256.py),
typed `at+jwt`, issued by us for the API audience and unexpired, and if everything it
depends on (connection, user, token family, app) is still active in the status cache.
Runs on every API call: the signature is checked with `cryptography` directly, public
keys are cached per kid, and the status answers are mirrored in process (see
shared/status_mirror.py) so that a call usually costs one ECDSA verification.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

import structlog
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, or_, select

from shared import es256
from shared.db.types import utcnow
from shared.errors import Unauthorized, Unavailable
from shared.es256 import is_low_s
from shared.models import SigningKey
from shared.redis_embedded import resolved_redis_url
from shared.runtime import Runtime
from shared.scopes import grants
from shared.status import Subject, all_active, status_key
from shared.status_mirror import StatusMirror

LEEWAY_S = 10
KEY_REFETCH_INTERVAL_S = 1.0  # an unknown kid reloads the keys at most this often
KEY_MAX_AGE_S = 60.0  # known keys are reloaded this often (a withdrawn key disappears)
MAX_TOKEN_LENGTH = 8192
MAX_CACHED_HEADERS = 256
ACCEPTED_TYPES = frozenset({"at+jwt", "application/at+jwt"})
SIGNATURE_B64_LENGTH = 86  # 64 bytes (r || s), base64url without padding
_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")

log = structlog.get_logger("koppel.tokens")

Kind = Literal["connection", "user", "app"]


class InvalidToken(Unauthorized):
    """A bearer token that is malformed, forged, expired or revoked (RFC 6750 3.1)."""

    slug, title = "invalid-token", "Invalid access token"

    def __init__(self, detail: str = "the access token is not valid") -> None:
        super().__init__(detail)
        self.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who calls: a user through a third-party connection, a user through a first-party
    app, or an app on its own behalf (client credentials)."""

    kind: Kind
    user_id: uuid.UUID | None
    client_id: str
    scopes: frozenset[str]
    environment_id: uuid.UUID | None
    connection_id: uuid.UUID | None
    debtor_id: uuid.UUID | None
    family_id: uuid.UUID | None
    jti: str
    claims: dict[str, Any] = field(repr=False, compare=False)
    # RFC 9449: the thumbprint of the DPoP key the token is bound to (`cnf.jkt`), if any.
    jkt: str | None = None

    def has_scope(self, scope: str) -> bool:
        """Whether the token grants `scope` (a write scope grants its read scope)."""
        return grants(self.scopes, scope)

    def status_subjects(self) -> list[tuple[Subject, str]]:
        """What must still be active for this token to be accepted."""
        # Ids in the claims are canonical (check_claims made sure), as status keys need.
        if self.kind == "app":
            return [(Subject.APP, self.client_id)]
        family = self.jti.split(".", 1)[0]
        if self.kind == "connection":
            return [(Subject.CONNECTION, self.claims["connection_id"]), (Subject.FAMILY, family)]
        return [(Subject.USER, self.claims["sub"]), (Subject.FAMILY, family),
                (Subject.APP, self.client_id)]


def _b64decode(segment: str) -> bytes:
    """base64url without padding (what urlsafe_b64decode does, with less overhead)."""
    data = segment.encode("ascii").translate(_URLSAFE_TO_STANDARD)
    return binascii.a2b_base64(data + b"=" * (-len(data) % 4))


def _json_object(segment: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64decode(segment).decode())
    except (binascii.Error, ValueError):
        raise InvalidToken("the access token is malformed") from None
    if not isinstance(value, dict):
        raise InvalidToken("the access token is malformed")
    return value


def _text(claims: dict[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidToken(f"the access token lacks a valid {name!r} claim")
    return value


@lru_cache(maxsize=65536)
def _canonical_uuid(value: str) -> uuid.UUID | None:
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        return None
    return parsed if str(parsed) == value else None


def _uuid(claims: dict[str, Any], name: str, value: Any = None) -> uuid.UUID:
    """A UUID claim in its canonical form (lower case, hyphens), as status keys use it."""
    value = claims.get(name) if value is None else value
    parsed = _canonical_uuid(value) if isinstance(value, str) else None
    if parsed is None:
        raise InvalidToken(f"the access token lacks a valid {name!r} claim")
    return parsed


def _time(claims: dict[str, Any], name: str) -> float:
    value: Any = claims.get(name)
    if type(value) not in (int, float):
        raise InvalidToken(f"the access token lacks a valid {name!r} claim")
    return value


def _header_kid(header_b64: str) -> str:
    """The kid of an acceptable JOSE header: ES256, typed as an access token, no crit."""
    header = _json_object(header_b64)
    typ, kid = header.get("typ"), header.get("kid")
    if header.get("alg") != "ES256" or "crit" in header:
        raise InvalidToken("the access token is not signed with ES256")
    if not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYPES:
        raise InvalidToken("the token is not an access token")
    if not isinstance(kid, str) or not kid:
        raise InvalidToken("the access token's signing key is unknown")
    return kid


def check_claims(claims: dict[str, Any], *, issuer: str, audience: str, now: float,
                 leeway: float = LEEWAY_S) -> Principal:
    """The Principal of verified `claims`, or InvalidToken if they are not acceptable."""
    if claims.get("iss") != issuer:
        raise InvalidToken("the access token was not issued here")
    aud = claims.get("aud")
    if not (aud == audience or (isinstance(aud, list) and audience in aud)):
        raise InvalidToken("the access token is meant for another audience")
    if _time(claims, "exp") + leeway < now:
        raise InvalidToken("the access token has expired")
    if _time(claims, "iat") - leeway > now:
        raise InvalidToken("the access token was issued in the future")
    if "nbf" in claims and _time(claims, "nbf") - leeway > now:
        raise InvalidToken("the access token is not valid yet")
    sub, client_id, jti = _text(claims, "sub"), _text(claims, "client_id"), _text(claims, "jti")
    scope = claims.get("scope")
    if not isinstance(scope, str):
        raise InvalidToken("the access token lacks a valid 'scope' claim")
    cnf, jkt = claims.get("cnf"), None
    if cnf is not None:
        jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
        if not isinstance(jkt, str) or not jkt:
            raise InvalidToken("the access token lacks a valid 'cnf' claim")
    kind: Kind
    user_id = environment_id = connection_id = debtor_id = family_id = None
    if claims.get("environment_id") is not None:
        kind = "user"
        user_id, environment_id = _uuid(claims, "sub"), _uuid(claims, "environment_id")
        family_id = _uuid(claims, "jti", jti.split(".", 1)[0])
        if claims.get("connection_id") is not None:
            kind = "connection"
            connection_id = _uuid(claims, "connection_id")
        if kind == "connection" or claims.get("debtor_id") is not None:
            debtor_id = _uuid(claims, "debtor_id")
    elif claims.get("connection_id") is not None or claims.get("debtor_id") is not None:
        raise InvalidToken("the access token lacks a valid 'environment_id' claim")
    elif sub != client_id:
        raise InvalidToken("the access token's subject does not match its client")
    else:
        kind = "app"
    return Principal(
        kind=kind, user_id=user_id, client_id=client_id, scopes=frozenset(scope.split()),
        environment_id=environment_id, connection_id=connection_id, debtor_id=debtor_id,
        family_id=family_id, jti=jti, claims=claims, jkt=jkt,
    )


def public_key_from_jwk(jwk: dict[str, Any]) -> ec.EllipticCurvePublicKey:
    """The P-256 public key of an EC JWK (ValueError/KeyError if it is not one)."""
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise ValueError("not a P-256 key")
    x, y = _b64decode(jwk["x"]), _b64decode(jwk["y"])
    if len(x) != 32 or len(y) != 32:
        raise ValueError("bad P-256 coordinates")
    numbers = ec.EllipticCurvePublicNumbers(
        int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
    )
    return numbers.public_key()


class PublishedKeys:
    """The ES256 public keys of the JWKS, loaded from the database and cached per kid."""

    def __init__(self, session_factory: async_sessionmaker, *,
                 refetch_interval: float = KEY_REFETCH_INTERVAL_S) -> None:
        self._session_factory = session_factory
        self._refetch_interval = refetch_interval
        self._keys: dict[str, ec.EllipticCurvePublicKey] = {}
        self._loaded_at = self._attempted_at = float("-inf")
        self._lock = asyncio.Lock()
        self.loads = 0

    def fresh(self, kid: str) -> ec.EllipticCurvePublicKey | None:
        """The key for `kid` if it is cached and recently loaded (no I/O)."""
        key = self._keys.get(kid)
        if key is not None and time.monotonic() - self._loaded_at < KEY_MAX_AGE_S:
            return key
        return None

    async def get(self, kid: str) -> ec.EllipticCurvePublicKey | None:
        """The key for `kid`; an unknown kid reloads the keys, at most once per interval.

        An unknown kid that arrives within the interval waits for the next reload rather
        than being refused, so a key created just after a reload (a rotation) is accepted
        at most one interval later; concurrent callers share that one reload."""
        key = self._keys.get(kid)
        now = time.monotonic()
        if key is not None and now - self._loaded_at < KEY_MAX_AGE_S:
            return key
        if key is not None and now - self._attempted_at < self._refetch_interval:
            return key
        async with self._lock:
            if self._attempted_at >= now:  # reloaded while this call waited
                return self._keys.get(kid) or key
            wait = self._attempted_at + self._refetch_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._attempted_at = time.monotonic()
            try:
                await self._load()
            except (SQLAlchemyError, OSError):
                if key is None:
                    raise
                log.warning("signing keys reload failed; using the cached ones")
        return self._keys.get(kid)

    async def _load(self) -> None:
        stmt = select(SigningKey.kid, SigningKey.public_jwk).where(
            SigningKey.alg == "ES256",
            or_(col(SigningKey.active), col(SigningKey.publish_until) > utcnow()),
        )
        async with self._session_factory() as session:
            rows = (await session.exec(stmt)).all()
        keys = {}
        for kid, jwk in rows:
            try:
                keys[kid] = public_key_from_jwk(jwk)
            except (ValueError, KeyError, TypeError):
                log.error("unusable signing key in the JWKS", kid=kid)
        self._keys, self._loaded_at = keys, time.monotonic()
        self.loads += 1


class TokenVerifier:
    """Verifies access tokens; one per process, used from its event loop."""

    def __init__(
        self, *, issuer: str, audience: str, session_factory: async_sessionmaker,
        redis: Redis, mirror: StatusMirror | None = None,
        key_refetch_interval: float = KEY_REFETCH_INTERVAL_S, leeway: float = LEEWAY_S,
    ) -> None:
        self.issuer, self.audience, self.leeway = issuer, audience, leeway
        self.keys = PublishedKeys(session_factory, refetch_interval=key_refetch_interval)
        self._session_factory = session_factory
        self._redis = redis
        self._mirror = mirror
        self._header_kids: dict[str, str] = {}

    @classmethod
    def from_runtime(cls, runtime: Runtime, *, mirror: bool = True, **options: Any
                     ) -> TokenVerifier:
        """A verifier on the runtime's database and Redis (the settings' issuer and audience)."""
        settings = runtime.settings
        return cls(
            issuer=settings.issuer, audience=settings.api_audience,
            session_factory=runtime.async_session, redis=runtime.redis,
            mirror=StatusMirror(resolved_redis_url(settings)) if mirror else None, **options,
        )

    def close(self) -> None:
        """Close the status mirror's connection."""
        if self._mirror is not None:
            self._mirror.close()

    async def verify(self, token: str) -> Principal:
        """The Principal of a valid, unrevoked access token; InvalidToken otherwise."""
        parts = token.split(".") if len(token) <= MAX_TOKEN_LENGTH else ()
        if len(parts) != 3 or len(parts[2]) != SIGNATURE_B64_LENGTH:
            raise InvalidToken("the access token is malformed")
        header_b64, payload_b64, signature_b64 = parts
        known_kid = self._header_kids.get(header_b64)
        kid = known_kid or _header_kid(header_b64)
        key = self.keys.fresh(kid) or await self.keys.get(kid)
        if key is None:
            raise InvalidToken("the access token's signing key is unknown")
        try:
            signature = _b64decode(signature_b64)
            # The signature is not signed: only its one canonical spelling is accepted.
            canonical = base64.urlsafe_b64encode(signature)[:SIGNATURE_B64_LENGTH]
            # Nor its second ECDSA spelling (r, n - s): Koppel signs in low-S form only.
            if canonical != signature_b64.encode() or not is_low_s(signature):
                raise InvalidSignature
            es256.verify(key, f"{header_b64}.{payload_b64}".encode(), signature)
        except (InvalidSignature, ValueError):
            raise InvalidToken("the access token's signature is not valid") from None
        if known_kid is None:  # remember headers of genuine tokens only
            if len(self._header_kids) >= MAX_CACHED_HEADERS:
                self._header_kids.clear()
            self._header_kids[header_b64] = kid
        principal = check_claims(_json_object(payload_b64), issuer=self.issuer,
                                 audience=self.audience, now=time.time(), leeway=self.leeway)
        if not await self._still_active(principal.status_subjects()):
            raise InvalidToken("the access token has been revoked")
        return principal

    async def _still_active(self, subjects: list[tuple[Subject, str]]) -> bool:
        mirror = self._mirror
        if mirror is None or not (mirror.connected or await mirror.ensure_connected()):
            return await self._ask_redis(subjects)
        keys = [status_key(subject, ident) for subject, ident in subjects]
        ticket = mirror.lookup(keys)
        if ticket is None:
            return True
        active = await self._ask_redis(subjects)
        if active:
            mirror.remember(keys, ticket)
        return active

    async def _ask_redis(self, subjects: list[tuple[Subject, str]]) -> bool:
        try:
            return await all_active(self._redis, self._session_factory, subjects)
        except RedisError:
            log.warning("status cache unavailable")
            exc = Unavailable("token status cannot be checked right now; try again")
            exc.headers["Retry-After"] = "1"
            raise exc from None
