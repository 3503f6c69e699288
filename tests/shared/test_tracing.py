"""The tracing settings (KOPPEL_OTEL_*) and what they select."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.config import Settings
from shared.tracing import open_tracer_provider, service_name, traces_endpoint


def test_off_by_default_and_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().otel_enabled is False
    assert open_tracer_provider(Settings(), "auth") is None
    monkeypatch.setenv("KOPPEL_OTEL_ENABLED", "true")
    monkeypatch.setenv("KOPPEL_OTEL_ENDPOINT", "https://collector.example:4318/")
    monkeypatch.setenv("KOPPEL_OTEL_SERVICE_NAME_PREFIX", "acme-koppel")
    monkeypatch.setenv("KOPPEL_OTEL_SAMPLE_RATIO", "0.25")
    settings = Settings()
    assert settings.otel_enabled is True and settings.otel_sample_ratio == 0.25
    assert traces_endpoint(settings) == "https://collector.example:4318/v1/traces"
    assert service_name(settings, "sync") == "acme-koppel-sync"


def test_an_endpoint_given_with_its_path_is_kept() -> None:
    settings = Settings(otel_endpoint="http://otel:4318/v1/traces")
    assert traces_endpoint(settings) == "http://otel:4318/v1/traces"


@pytest.mark.parametrize("ratio", ["-0.1", "1.5", "half"])
def test_a_sample_ratio_outside_0_to_1_is_refused(ratio: str) -> None:
    with pytest.raises(ValidationError):
        Settings(otel_sample_ratio=ratio)


def test_on_a_provider_names_the_service() -> None:
    settings = Settings(otel_enabled=True, otel_endpoint="http://127.0.0.1:9")
    provider = open_tracer_provider(settings, "registry")
    try:
        assert provider.resource.attributes["service.name"] == "koppel-registry"
    finally:
        provider.shutdown()
