"""The `Idempotency-Key` mechanism as a whole: documented on every POST and PATCH of
registry and sync (and nowhere on auth, whose OAuth endpoints keep their RFCs'
semantics), and its key and fingerprint rules."""

from __future__ import annotations

import pytest

from services.auth.app import create_app as create_auth
from services.registry.app import create_app as create_registry
from services.sync.app import create_app as create_sync
from shared.config import Settings
from shared.idempotency.keys import fingerprint, valid_key


@pytest.mark.parametrize("factory", [create_registry, create_sync])
def test_every_post_and_patch_documents_the_header(settings: Settings, factory) -> None:
    document = factory(settings).openapi()
    walked = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            headers = [p for p in operation.get("parameters", [])
                       if p["in"] == "header" and p["name"] == "Idempotency-Key"]
            if method in ("post", "patch"):
                walked += 1
                assert len(headers) == 1, f"{method.upper()} {path}"
                schema = headers[0]["schema"]
                assert (schema["minLength"], schema["maxLength"]) == (1, 255)
                assert headers[0]["required"] is False
            else:
                assert headers == [], f"{method.upper()} {path}"
    assert walked >= 10


def test_auth_documents_no_idempotency_key(settings: Settings) -> None:
    document = create_auth(settings).openapi()
    assert "Idempotency-Key" not in str(document)


@pytest.mark.parametrize(("raw", "key"), [
    (b"a", "a"), (b"  spaced key  ", "spaced key"), (b"~" * 255, "~" * 255),
    (b"", None), (b"x" * 256, None), (b"caf\xc3\xa9", None), (b"a\tb", None),
    (b"a\x7fb", None),
])
def test_keys_are_1_to_255_printable_ascii(raw: bytes, key: str | None) -> None:
    assert valid_key(raw) == key


def test_the_fingerprint_covers_method_path_and_body() -> None:
    base = fingerprint("POST", "/v1/webhooks", b"{}")
    assert base == fingerprint("POST", "/v1/webhooks", b"{}")
    assert len({base, fingerprint("PATCH", "/v1/webhooks", b"{}"),
                fingerprint("POST", "/v1/webhooks/x", b"{}"),
                fingerprint("POST", "/v1/webhooks", b"{} "),
                # No two splits of the same bytes meet.
                fingerprint("POST", "/v1/webhooks{", b"}")}) == 5
