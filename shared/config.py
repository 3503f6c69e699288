"""Koppel's settings: one object, read from `KOPPEL_*` variables and a `.env` file.

Nothing here connects to anything; services build engines and clients from these
values in their lifespan.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, IPvAnyNetwork, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# argon2id's cost by default and at least in production: RFC 9106's second recommended
# profile (t=3, 64 MiB, p=4), which argon2-cffi's PasswordHasher() uses.
ARGON2_TIME_COST = 3
ARGON2_MEMORY_KIB = 64 * 1024
ARGON2_PARALLELISM = 4


class ConfigError(Exception):
    """Configuration that Koppel cannot start with; the message is one line for operators."""


class Settings(BaseSettings):
    """Every setting Koppel reads. Defaults run everything locally on the embedded default."""

    model_config = SettingsConfigDict(
        env_prefix="KOPPEL_",
        env_file=".env",
        extra="ignore",
        env_file_encoding="utf-8",
        env_ignore_empty=True,  # a blank KOPPEL_* variable counts as unset
    )

    env: Literal["development", "test", "production"] = "development"
    var_dir: Path = Path("var")

    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: a SQLite file under var/"
    )
    redis_url: str | None = Field(
        default=None, description="redis:// or unix:// URL; default: the embedded Redis under var/"
    )
    # A server that accepts connections and never answers (stopped, wedged, a stuck proxy)
    # is bounded by these, on the client side (shared/db/engine.py, shared/runtime.py).
    database_read_timeout: float = Field(
        default=10.0, ge=0,
        description="seconds a service waits for one answer of PostgreSQL (a statement's "
        "result, a commit) before it drops the connection and answers 503; 0: no bound. "
        "Never applied to the command line or migrations",
    )
    redis_timeout: float = Field(
        default=2.0, gt=0,
        description="seconds any process waits to connect to Redis or for one answer",
    )

    keys: dict[str, str] | None = Field(
        default=None,
        description='key ring as JSON: {"key-id": "<base64 of 32 random bytes>", ...}',
    )
    active_key_id: str | None = None
    digest_key: str | None = Field(
        default=None, description="base64 of 32 random bytes: the HMAC key for token digests"
    )

    issuer: str = "http://127.0.0.1:8001"
    auth_url: str = "http://127.0.0.1:8001"
    registry_url: str = "http://127.0.0.1:8002"
    sync_url: str = "http://127.0.0.1:8003"
    api_audience: str = "koppel-api"

    access_token_ttl: int = Field(default=15 * 60, gt=0)
    id_token_ttl: int = Field(default=60 * 60, gt=0)
    authorization_code_ttl: int = Field(default=5 * 60, gt=0)
    # Pushed authorization requests (RFC 9126): how long a `request_uri` stays usable
    # (60 to 600 seconds: RFC 9126 section 2.2 calls 5 to 600 typical), and
    # whether every client must push its authorization requests (section 5).
    pushed_authorization_request_ttl: int = Field(default=90, ge=60, le=600)
    require_pushed_authorization_requests: bool = False
    refresh_token_idle_ttl: int = Field(default=30 * 24 * 3600, gt=0)
    refresh_token_absolute_ttl: int = Field(default=365 * 24 * 3600, gt=0)
    login_session_ttl: int = Field(default=12 * 3600, gt=0)

    # Failed attempts (wrong password, bad client secret) allowed per window before 429.
    failed_login_limit_per_account: int = Field(default=10, gt=0)
    failed_login_limit_per_address: int = Field(default=100, gt=0)
    failed_client_auth_limit: int = Field(default=20, gt=0)
    # Sandboxes a partner may create per hour (each seeds an environment and hashes six
    # passwords): creating and deleting in a loop cannot take the registry's CPU.
    sandbox_creations_per_hour: int = Field(default=20, gt=0)
    failed_attempt_window: int = Field(default=15 * 60, gt=0)
    # An account over its limit is not locked: one attempt per this many seconds is still
    # checked, so the owner's right password gets in and guessing slows to a crawl.
    failed_login_account_interval: int = Field(default=5, gt=0)

    # The cost of each password hash (argon2id, shared/passwords.py). The defaults are
    # RFC 9106's second recommended profile (argon2-cffi's own); production refuses less
    # time or memory. Tests lower them: a hash then takes microseconds instead of 0.2 s.
    # A stored hash names its own cost, so it verifies whatever these say.
    argon2_time_cost: int = Field(
        default=ARGON2_TIME_COST, ge=1, description="argon2id iterations per password hash")
    argon2_memory_kib: int = Field(
        default=ARGON2_MEMORY_KIB, ge=8, description="argon2id memory per password hash, KiB "
        "(at least 8 per lane)")
    argon2_parallelism: int = Field(
        default=ARGON2_PARALLELISM, ge=1, le=64, description="argon2id lanes per password hash")

    # Forwarded headers (X-Forwarded-For, X-Forwarded-Proto) are believed only from these
    # peers: the TLS proxy or load balancer in front. Empty: from nobody, so the address
    # that the per-address limits count is always the connecting peer's.
    trusted_proxies: Annotated[list[IPvAnyNetwork], NoDecode] = Field(
        default_factory=list,
        description="comma-separated addresses or networks (CIDR) of the proxies whose "
        "X-Forwarded-For and X-Forwarded-Proto are trusted; empty: none",
    )

    # How often the worker signs a checkpoint of each audit chain that moved
    # (shared/audit_checkpoints.py); a new chain gets its first one within a minute.
    audit_checkpoint_interval: int = Field(default=3600, ge=60)

    # DPoP (RFC 9449, shared/dpop.py): how old a proof may be, how far ahead of the
    # server's clock, and whether every proof must carry a server nonce (DPoP-Nonce).
    dpop_proof_max_age: int = Field(
        default=60, gt=0, description="seconds a DPoP proof's iat may lie in the past")
    dpop_proof_max_skew: int = Field(
        default=5, ge=0, description="seconds a DPoP proof's iat may lie in the future")
    dpop_nonce_required: bool = Field(
        default=False, description="every DPoP proof must carry a current server nonce "
        "(answered use_dpop_nonce with a DPoP-Nonce header otherwise)")
    dpop_nonce_lifetime: int = Field(
        default=300, ge=10, description="seconds one server nonce is current (the previous "
        "one is still accepted)")
    # Days before a connection expires that its app receives `connection.expiring`
    # (registry job `connections.expire`, shared/policy/lifetime.py).
    consent_expiry_notice_days: int = Field(default=14, ge=1, le=60)
    # Which consented scope each data API call needed (shared/last_used.py): Manage apps'
    # scope_usage and the unused_scopes hints. Off, nothing new is noted.
    scope_usage_tracking: bool = Field(
        default=True, description="note which scope each data API call needed (the "
        "least-privilege hints of Manage apps and the overview)")
    # The data-access log (services/sync/access_log.py): which app read or changed which
    # employee's data. Off, no access is noted (the benchmark compares both).
    data_access_log: bool = Field(
        default=True, description="note every data API call's employees, scope and action "
        "for the data-access log (flushed to the database by the worker every 15 s)")
    data_access_retention_days: int = Field(
        default=400, ge=1, description="days the data-access log keeps a day's entries "
        "(the worker's daily purge deletes older days)")

    login_ui_url: str | None = None
    consent_ui_url: str | None = None
    # Where a user manages (and revokes) their linked apps in the SaaS; the consent page
    # links it when set (services/auth/pages/templates/consent.html).
    manage_apps_url: str | None = Field(
        default=None, description="http(s) URL of the SaaS's Manage apps page; the consent "
        "page links it when set")
    webhooks_allow_loopback: bool = False

    log_level: str = "info"
    log_json: bool = True

    # Optional OpenTelemetry tracing (shared/tracing.py): spans over OTLP/HTTP protobuf.
    otel_enabled: bool = False
    otel_endpoint: str = Field(
        default="http://127.0.0.1:4318",
        description="OTLP/HTTP collector base URL; spans go to <endpoint>/v1/traces",
    )
    otel_service_name_prefix: str = Field(
        default="koppel", description='service.name is "<prefix>-<service>", e.g. koppel-auth'
    )
    otel_sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)

    @field_validator("database_url", "redis_url", "login_ui_url", "consent_ui_url")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @model_validator(mode="after")
    def _argon2_memory_per_lane(self) -> Settings:
        if self.argon2_memory_kib < 8 * self.argon2_parallelism:
            raise ValueError("KOPPEL_ARGON2_MEMORY_KIB must be at least 8 per lane "
                             "(8 x KOPPEL_ARGON2_PARALLELISM)")
        return self

    @field_validator("manage_apps_url")
    @classmethod
    def _web_address(cls, value: str | None) -> str | None:
        if value and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value or None

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    def public_url(self, service: str) -> str:
        """The base URL clients use for `service` (what a DPoP proof's `htu` names)."""
        return {"auth": self.issuer, "registry": self.registry_url,
                "sync": self.sync_url}.get(service, self.issuer)

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def resolved_database_url(self) -> str:
        """The database URL in force: the configured one, or the embedded SQLite file."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.var_dir / 'koppel.db').resolve()}"

    @property
    def uses_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def uses_embedded_redis(self) -> bool:
        return self.redis_url is None

    @property
    def key_file(self) -> Path:
        return self.var_dir / "keys.json"

    def check_production(self) -> None:
        """Refuse, with one line, the defaults that must never run in production."""
        if not self.is_production:
            return
        problems = []
        if self.uses_sqlite:
            problems.append("KOPPEL_DATABASE_URL must point at PostgreSQL, not SQLite")
        if self.uses_embedded_redis:
            problems.append("KOPPEL_REDIS_URL must be set (no embedded Redis)")
        if not self.keys or not self.active_key_id:
            problems.append(
                "KOPPEL_KEYS and KOPPEL_ACTIVE_KEY_ID must be set (no generated key file)"
            )
        if not self.digest_key:
            problems.append("KOPPEL_DIGEST_KEY must be set (no generated key file)")
        if self.webhooks_allow_loopback:
            problems.append("KOPPEL_WEBHOOKS_ALLOW_LOOPBACK must be false")
        if not self.issuer.startswith("https://"):
            problems.append("KOPPEL_ISSUER must be an https URL")
        if self.argon2_time_cost < ARGON2_TIME_COST or self.argon2_memory_kib < ARGON2_MEMORY_KIB:
            problems.append(f"KOPPEL_ARGON2_TIME_COST must be at least {ARGON2_TIME_COST} and "
                            f"KOPPEL_ARGON2_MEMORY_KIB at least {ARGON2_MEMORY_KIB}")
        if problems:
            raise ConfigError("production refuses to start: " + "; ".join(problems))


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once on first use (never at import)."""
    return Settings()


def service_url(settings: Settings, service: str) -> str:
    """The public URL of `service` ("auth", "registry" or "sync")."""
    urls = {"auth": settings.auth_url, "registry": settings.registry_url,
            "sync": settings.sync_url}
    return urls[service]
