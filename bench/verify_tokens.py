"""Micro-benchmark: access-token verification against raw ES256 signature checks.

    KOPPEL_DATABASE_URL=postgresql://... KOPPEL_REDIS_URL=redis://... \\
        .venv/bin/python bench/verify_tokens.py [-n 5000] [--pin 0]

Adds a user, a connection and a published (not active) signing key to the configured,
migrated database, verifies N distinct connection tokens with the full TokenVerifier
(signature, claims, status check), with the in-process status mirror and without it,
and the same signatures with `cryptography` alone, then removes what it added. One
process, one event loop: one core; `--pin` also pins the process to a CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import time
from datetime import timedelta

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    encode_dss_signature,
)
from sqlmodel import Session, delete

from shared.config import Settings
from shared.db.types import utcnow
from shared.es256 import jws_signature
from shared.models import (
    App,
    Connection,
    Debtor,
    Environment,
    SigningKey,
    TokenFamily,
    User,
    UserTemplate,
)
from shared.runtime import Runtime, open_runtime
from shared.tokens import TokenVerifier
from shared.vault.columns import SIGNING_PRIVATE_KEY

ECDSA = ec.ECDSA(hashes.SHA256())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def setup(runtime: Runtime, private: ec.EllipticCurvePrivateKey) -> dict:
    """Commit the rows the tokens need; returns their ids (for the tokens and clean-up)."""
    numbers = private.public_key().public_numbers()
    kid = f"bench-{secrets.token_hex(6)}"
    jwk = {"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
           "x": b64(numbers.x.to_bytes(32, "big")), "y": b64(numbers.y.to_bytes(32, "big"))}
    tag = secrets.token_hex(6)
    with runtime.session() as session, session.begin():
        key = SigningKey(kid=kid, alg="ES256", public_jwk=jwk, private_key_ciphertext=b"",
                         private_key_key_id="", active=False,
                         publish_until=utcnow() + timedelta(hours=1))
        pem = private.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        SIGNING_PRIVATE_KEY.seal(runtime.box, key, pem)
        env = Environment(name=f"bench-{tag}")
        session.add_all([key, env])
        session.flush()
        debtor = Debtor(environment_id=env.id, name="bench", number=tag)
        app = App(client_id=f"bench-{tag}", name="bench", scopes=["company.info.read"])
        session.add_all([debtor, app])
        session.flush()
        user = User(environment_id=env.id, email=f"bench-{tag}@example.test", name="bench",
                    password_hash="-", template=UserTemplate.COMPANY, debtor_id=debtor.id)
        session.add(user)
        session.flush()
        conn = Connection(environment_id=env.id, user_id=user.id, app_id=app.id,
                          debtor_id=debtor.id, scopes=["company.info.read"])
        session.add(conn)
        session.flush()
        family = TokenFamily(app_id=app.id, user_id=user.id, connection_id=conn.id,
                             environment_id=env.id, scopes=["company.info.read"],
                             expires_at=utcnow() + timedelta(days=1))
        session.add(family)
        session.flush()
        return {"kid": kid, "env": env.id, "debtor": debtor.id, "app": app.id,
                "client_id": app.client_id, "user": user.id, "conn": conn.id,
                "family": family.id}


def teardown(runtime: Runtime, ids: dict) -> None:
    with runtime.session() as session, session.begin():
        s: Session = session
        s.exec(delete(TokenFamily).where(TokenFamily.id == ids["family"]))
        s.exec(delete(Connection).where(Connection.id == ids["conn"]))
        s.exec(delete(User).where(User.id == ids["user"]))
        s.exec(delete(App).where(App.id == ids["app"]))
        s.exec(delete(Debtor).where(Debtor.id == ids["debtor"]))
        s.exec(delete(Environment).where(Environment.id == ids["env"]))
        s.exec(delete(SigningKey).where(SigningKey.kid == ids["kid"]))


def make_tokens(settings: Settings, private: ec.EllipticCurvePrivateKey, ids: dict, n: int
                ) -> list[str]:
    header = b64(json.dumps({"alg": "ES256", "typ": "at+jwt", "kid": ids["kid"]}).encode())
    now = int(time.time())
    tokens = []
    for _ in range(n):
        claims = {
            "iss": settings.issuer, "aud": settings.api_audience, "sub": str(ids["user"]),
            "client_id": ids["client_id"], "scope": "company.info.read employee.info.read",
            "exp": now + 3600, "iat": now, "environment_id": str(ids["env"]),
            "connection_id": str(ids["conn"]), "debtor_id": str(ids["debtor"]),
            "jti": f"{ids['family']}.{secrets.token_urlsafe(16)}",
        }
        signing_input = f"{header}.{b64(json.dumps(claims).encode())}"
        # Low-S, as Koppel's signer writes and its verifier requires (shared/es256.py).
        signature = jws_signature(private.sign(signing_input.encode(), ECDSA))
        tokens.append(f"{signing_input}.{b64(signature)}")
    return tokens


def prepare_raw(tokens: list[str]) -> list[tuple[bytes, bytes]]:
    """(DER signature, signing input) of each token: what a raw ES256 check needs."""
    prepared = []
    for token in tokens:
        signing_input, _, sig = token.rpartition(".")
        raw = base64.urlsafe_b64decode(sig + "==")
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        prepared.append((der, signing_input.encode()))
    return prepared


def time_raw(public: ec.EllipticCurvePublicKey, batch: list[tuple[bytes, bytes]]) -> float:
    start = time.perf_counter()
    for der, data in batch:
        public.verify(der, data, ECDSA)
    return time.perf_counter() - start


async def time_verifier(verifier: TokenVerifier, batch: list[str]) -> float:
    start = time.perf_counter()
    for token in batch:
        await verifier.verify(token)
    return time.perf_counter() - start


async def main(n: int, rounds: int, batch_size: int) -> None:
    """Interleave small batches of each kind and keep each kind's fastest batch, so
    that load from other processes distorts the ratios as little as possible."""
    settings = Settings()
    private = ec.generate_private_key(ec.SECP256R1())
    async with open_runtime(settings) as runtime:
        ids = setup(runtime, private)
        try:
            tokens = make_tokens(settings, private, ids, n)
            prepared = prepare_raw(tokens)
            mirrored = TokenVerifier.from_runtime(runtime)
            direct = TokenVerifier.from_runtime(runtime, mirror=False)
            for verifier in (mirrored, direct):  # keys loaded, statuses cached, mirror up
                for token in tokens[:20]:
                    await verifier.verify(token)
            best = {"raw": float("inf"), "mirror": float("inf"), "direct": float("inf")}
            for _ in range(rounds):
                for start in range(0, n - batch_size + 1, batch_size):
                    chunk = slice(start, start + batch_size)
                    times = {
                        "raw": time_raw(private.public_key(), prepared[chunk]),
                        "mirror": await time_verifier(mirrored, tokens[chunk]),
                        "direct": await time_verifier(direct, tokens[chunk]),
                    }
                    best = {kind: min(best[kind], times[kind]) for kind in best}
            mirrored.close()
        finally:
            teardown(runtime, ids)
    rate = {kind: batch_size / seconds for kind, seconds in best.items()}
    print(f"database: {settings.resolved_database_url.split('@')[-1]}  tokens: {n}  "
          f"rounds: {rounds}  batches of {batch_size} (fastest batch of each kind)")
    print(f"raw ES256 verify (cryptography):         {rate['raw']:9.0f} /s")
    print(f"TokenVerifier, status mirror (default):  {rate['mirror']:9.0f} /s  "
          f"ratio {rate['mirror'] / rate['raw']:.2f}")
    print(f"TokenVerifier, Redis on every call:      {rate['direct']:9.0f} /s  "
          f"ratio {rate['direct'] / rate['raw']:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5000, help="tokens per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=250, help="tokens per timed batch")
    parser.add_argument("--pin", type=int, default=None, help="pin the process to this CPU")
    args = parser.parse_args()
    if args.pin is not None:
        os.sched_setaffinity(0, {args.pin})
    asyncio.run(main(args.n, args.rounds, args.batch))
