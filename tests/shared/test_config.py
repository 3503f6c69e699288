import base64
import secrets

import argon2
import pytest
from pydantic import ValidationError

from shared.config import ConfigError, Settings


def _key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _production(**overrides: object) -> Settings:
    values: dict = {
        "env": "production",
        "database_url": "postgresql://koppel@db.internal/koppel",
        "redis_url": "redis://redis.internal:6379/0",
        "keys": {"k1": _key()},
        "active_key_id": "k1",
        "digest_key": _key(),
        "issuer": "https://auth.koppel.example",
    }
    return Settings(_env_file=None, **{**values, **overrides})


def test_production_with_real_settings_starts() -> None:
    _production().check_production()


def test_production_refuses_every_local_default_in_one_line() -> None:
    settings = Settings(_env_file=None, env="production", webhooks_allow_loopback=True)
    with pytest.raises(ConfigError) as raised:
        settings.check_production()
    message = str(raised.value)
    assert "\n" not in message
    for part in (
        "SQLite",
        "KOPPEL_REDIS_URL",
        "KOPPEL_KEYS",
        "KOPPEL_DIGEST_KEY",
        "KOPPEL_WEBHOOKS_ALLOW_LOOPBACK",
        "KOPPEL_ISSUER",
    ):
        assert part in message


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"database_url": "sqlite:////srv/koppel.db"}, "SQLite"),
        ({"redis_url": None}, "KOPPEL_REDIS_URL"),
        ({"keys": None}, "KOPPEL_KEYS"),
        ({"active_key_id": None}, "KOPPEL_ACTIVE_KEY_ID"),
        ({"digest_key": None}, "KOPPEL_DIGEST_KEY"),
        ({"webhooks_allow_loopback": True}, "KOPPEL_WEBHOOKS_ALLOW_LOOPBACK"),
        ({"issuer": "http://auth.koppel.example"}, "KOPPEL_ISSUER"),
    ],
)
def test_production_refuses_each_default_alone(overrides: dict, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        _production(**overrides).check_production()


def test_other_environments_accept_the_defaults() -> None:
    Settings(_env_file=None, env="development", webhooks_allow_loopback=True).check_production()
    Settings(_env_file=None, env="test").check_production()


@pytest.mark.parametrize(
    "name",
    [
        "KOPPEL_DATABASE_URL",
        "KOPPEL_REDIS_URL",
        "KOPPEL_KEYS",
        "KOPPEL_ACTIVE_KEY_ID",
        "KOPPEL_DIGEST_KEY",
        "KOPPEL_ENV",
        "KOPPEL_WEBHOOKS_ALLOW_LOOPBACK",
        "KOPPEL_ACCESS_TOKEN_TTL",
        "KOPPEL_LOGIN_UI_URL",
    ],
)
def test_a_blank_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "")
    settings = Settings(_env_file=None)
    field = name.removeprefix("KOPPEL_").lower()
    assert getattr(settings, field) == Settings.model_fields[field].default


def test_blank_urls_fall_back_to_the_embedded_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KOPPEL_DATABASE_URL", "")
    monkeypatch.setenv("KOPPEL_REDIS_URL", "")
    settings = Settings(_env_file=None)
    assert settings.uses_sqlite and settings.uses_embedded_redis


def test_variables_are_read_with_the_koppel_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KOPPEL_ENV", "test")
    monkeypatch.setenv("KOPPEL_WEBHOOKS_ALLOW_LOOPBACK", "true")
    monkeypatch.setenv("KOPPEL_KEYS", '{"k1": "a2V5"}')
    settings = Settings(_env_file=None)
    assert (settings.env, settings.webhooks_allow_loopback) == ("test", True)
    assert settings.keys == {"k1": "a2V5"}


def test_the_env_file_is_read(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("KOPPEL_API_AUDIENCE=from-dot-env\nKOPPEL_DATABASE_URL=\n")
    settings = Settings(_env_file=env_file)
    assert settings.api_audience == "from-dot-env"
    assert settings.database_url is None


def test_login_throttle_defaults_are_the_documented_ones() -> None:
    """README and docs/security.md promise these numbers: 10 failures per account per
    15 minutes, then one checked attempt per 5 seconds; 100 failures per address."""
    settings = Settings(_env_file=None)
    assert settings.failed_login_limit_per_account == 10
    assert settings.failed_attempt_window == 15 * 60
    assert settings.failed_login_account_interval == 5
    assert settings.failed_login_limit_per_address == 100


def test_trusted_proxies_are_empty_by_default_and_parsed_from_a_comma_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KOPPEL_TRUSTED_PROXIES", raising=False)
    assert Settings(_env_file=None).trusted_proxies == []
    monkeypatch.setenv("KOPPEL_TRUSTED_PROXIES", " 10.1.2.3, 10.0.0.0/8 ,fd00::/8")
    assert [str(n) for n in Settings(_env_file=None).trusted_proxies] == [
        "10.1.2.3/32", "10.0.0.0/8", "fd00::/8"]
    for wrong in ("*", "proxy.internal", "10.0.0.1/8"):
        monkeypatch.setenv("KOPPEL_TRUSTED_PROXIES", wrong)
        with pytest.raises(ValueError):
            Settings(_env_file=None)


def test_password_hashing_defaults_are_rfc_9106s_profile_and_argon2_cffis() -> None:
    settings = Settings(_env_file=None)
    profile = argon2.profiles.RFC_9106_LOW_MEMORY
    assert (settings.argon2_time_cost, settings.argon2_memory_kib,
            settings.argon2_parallelism) == (profile.time_cost, profile.memory_cost,
                                             profile.parallelism) == (3, 65536, 4)
    hasher = argon2.PasswordHasher()
    assert (hasher.time_cost, hasher.memory_cost, hasher.parallelism) == (3, 65536, 4)


@pytest.mark.parametrize(
    "values",
    [{"argon2_time_cost": 0}, {"argon2_memory_kib": 7}, {"argon2_parallelism": 0},
     {"argon2_parallelism": 2, "argon2_memory_kib": 15}],
)
def test_password_hashing_below_argon2s_minimum_is_refused(values: dict) -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, **values)


@pytest.mark.parametrize(
    "overrides", [{"argon2_time_cost": 2}, {"argon2_memory_kib": 32 * 1024}])
def test_production_refuses_a_cheaper_password_hash(overrides: dict) -> None:
    with pytest.raises(ConfigError, match="KOPPEL_ARGON2_TIME_COST"):
        _production(**overrides).check_production()


def test_production_accepts_a_dearer_password_hash() -> None:
    _production(argon2_time_cost=4, argon2_memory_kib=128 * 1024,
                argon2_parallelism=2).check_production()
