"""The fixed data set of `koppel_bench`: the demo environment (bench/sync_bench.py's
`Bench`: 50 employees per company, partner apps with connections and their tokens), plus
the auth scenarios' partner app, and single-use codes, refresh tokens and login
challenges minted straight into the database and Redis in bulk."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import secrets
from datetime import timedelta

import redis
from sqlalchemy import insert
from sqlmodel import select

from bench.sync_bench import Bench
from shared.db.types import utcnow, uuid7
from shared.models import App, AuthorizationCode, RefreshToken, TokenFamily, User
from shared.passwords import hash_password
from shared.vault import TokenKind, load_keyring, new_token, token_digest

CLIENT_ID = "bench-app"
FAPI_CLIENT_ID = "bench-fapi-app"
REDIRECT = "http://127.0.0.1:9/cb"
USER_EMAIL = "hr_manager@bench.koppel.test"
PASSWORD = "bench-password"
SCOPES = ["employee.info.read", "offline_access"]


class World(Bench):
    """Seeds on construction (migrate, demo seed, the auth app); mints on demand."""

    def __init__(self, env: dict[str, str], redis_url: str, employees: int = 50) -> None:
        super().__init__(env, employees)
        # Tokens signed here must name the issuer the services under test expect.
        self.settings = self.settings.model_copy(update={"issuer": env["KOPPEL_ISSUER"]})
        self.redis_url = redis_url
        self.keyring = load_keyring(self.settings)
        self.secret = new_token(TokenKind.CLIENT_SECRET)
        self.verifier = secrets.token_urlsafe(48)
        digest = hashlib.sha256(self.verifier.encode()).digest()
        self.challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        with self.sessions() as session, session.begin():
            user = session.exec(select(User).where(User.email == USER_EMAIL)).one()
            user.password_hash = hash_password(PASSWORD)
            app = App(client_id=CLIENT_ID, name="Bench", redirect_uris=[REDIRECT],
                      scopes=[*SCOPES, "webhooks.manage"],
                      grant_types=["authorization_code", "refresh_token"],
                      response_types=["code"], token_endpoint_auth_method="client_secret_basic",
                      client_secret_digest=token_digest(self.keyring.digest_key, self.secret))
            session.add(app)
            session.flush()
            self.app_id, self.user_id, self.user_env = app.id, user.id, user.environment_id
        self.fapi_app_id = None

    def add_fapi_app(self, jwks: dict) -> None:
        """`bench-fapi-app`: a FAPI 2.0 client (shared.oauth.is_fapi): private_key_jwt with
        `jwks`, pushed authorization requests required, DPoP-bound access tokens."""
        with self.sessions() as session, session.begin():
            app = App(client_id=FAPI_CLIENT_ID, name="Bench FAPI", redirect_uris=[REDIRECT],
                      scopes=SCOPES, grant_types=["authorization_code", "refresh_token"],
                      response_types=["code"], token_endpoint_auth_method="private_key_jwt",
                      jwks=jwks, require_pushed_authorization_requests=True,
                      dpop_bound_access_tokens=True)
            session.add(app)
            session.flush()
            self.fapi_app_id = app.id

    @property
    def basic_auth(self) -> dict[str, str]:
        pair = base64.b64encode(f"{CLIENT_ID}:{self.secret}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}

    def _families(self, n: int, app_id=None) -> list[dict]:
        now = utcnow()
        return [{"id": uuid7(), "app_id": app_id or self.app_id, "user_id": self.user_id,
                 "environment_id": self.user_env, "scopes": SCOPES, "created_at": now,
                 "expires_at": now + timedelta(days=30)} for _ in range(n)]

    def mint_codes(self, n: int, *, fapi: bool = False, dpop_jkt: str | None = None
                   ) -> list[str]:
        """`n` authorization codes (PKCE S256 of `self.verifier`), each in its own family.
        First-party-shaped families (no connection): the grant still checks the code,
        PKCE, the family, the user and the app, and issues tokens. `fapi`: codes of
        `bench-fapi-app`; `dpop_jkt`: bound to that DPoP key (RFC 9449 section 10)."""
        app_id = self.fapi_app_id if fapi else self.app_id
        families = self._families(n, app_id)
        plain = [new_token(TokenKind.AUTHORIZATION_CODE) for _ in range(n)]
        now = utcnow()
        rows = [{"id": uuid7(), "code_digest": token_digest(self.keyring.digest_key, code),
                 "app_id": app_id, "user_id": self.user_id, "family_id": family["id"],
                 "redirect_uri": REDIRECT, "scopes": SCOPES, "code_challenge": self.challenge,
                 "code_challenge_method": "S256", "dpop_jkt": dpop_jkt, "auth_time": now,
                 "created_at": now,
                 "expires_at": now + timedelta(hours=1)}
                for code, family in zip(plain, families, strict=True)]
        self._insert(families, AuthorizationCode, rows)
        return plain

    def mint_refresh_tokens(self, n: int) -> list[str]:
        families = self._families(n)
        plain = [new_token(TokenKind.REFRESH_TOKEN) for _ in range(n)]
        now = utcnow()
        rows = [{"id": uuid7(), "token_digest": token_digest(self.keyring.digest_key, token),
                 "family_id": family["id"], "created_at": now,
                 "expires_at": now + timedelta(days=30)}
                for token, family in zip(plain, families, strict=True)]
        self._insert(families, RefreshToken, rows)
        return plain

    def _insert(self, families: list[dict], model, rows: list[dict]) -> None:
        with self.sessions() as session, session.begin():
            for start in range(0, len(rows), 5000):
                session.execute(insert(TokenFamily), families[start:start + 5000])
                session.execute(insert(model), rows[start:start + 5000])

    def mint_login_challenges(self, n: int) -> tuple[list[tuple[str, str]], str]:
        """Pending authorization requests bound to one browser cookie: (challenge, csrf)
        pairs, for the login scenario (as /authorize would leave them in Redis)."""
        from services.auth.oauth2.pending import Pending, _pending_key

        cookie = secrets.token_urlsafe(32)
        client = redis.Redis.from_url(self.redis_url)

        class _Runtime:  # the attributes _pending_key reads
            keyring = self.keyring

        pipe = client.pipeline(transaction=False)
        out = []
        for _ in range(n):
            challenge = new_token(TokenKind.CHALLENGE)
            pending = Pending(query=[("client_id", CLIENT_ID)], client_id=CLIENT_ID,
                              browser=token_digest(self.keyring.digest_key, cookie))
            pipe.set(_pending_key(_Runtime, challenge),
                     json.dumps(dataclasses.asdict(pending)), ex=900)
            out.append((challenge, pending.csrf))
        pipe.execute()
        client.close()
        return out, cookie
