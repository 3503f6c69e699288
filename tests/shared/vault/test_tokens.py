import base64
import hashlib
import hmac
import secrets

import pytest

from shared.vault import TokenKind, digest_matches, new_token, token_digest

KEY = secrets.token_bytes(32)


@pytest.mark.parametrize("kind", list(TokenKind))
def test_a_token_is_its_kind_prefix_and_256_random_bits(kind: TokenKind) -> None:
    token = new_token(kind)
    prefix, _, body = token.partition("_")
    assert prefix == kind.value
    assert len(base64.urlsafe_b64decode(body + "=")) == 32
    assert len({new_token(kind) for _ in range(50)}) == 50


def test_prefixes_tell_kinds_apart() -> None:
    prefixes = [new_token(kind).partition("_")[0] for kind in TokenKind]
    assert len(set(prefixes)) == len(TokenKind)


def test_the_digest_is_hmac_sha256_under_the_digest_key() -> None:
    token = new_token(TokenKind.REFRESH_TOKEN)
    digest = token_digest(KEY, token)
    assert digest == hmac.new(KEY, token.encode(), hashlib.sha256).hexdigest()
    assert digest != hashlib.sha256(token.encode()).hexdigest()
    assert len(digest) == 64


def test_another_digest_key_gives_another_digest() -> None:
    token = new_token(TokenKind.AUTHORIZATION_CODE)
    assert token_digest(KEY, token) != token_digest(secrets.token_bytes(32), token)
    assert token_digest(KEY, token) == token_digest(KEY, token)


def test_digest_matches_only_the_token_under_the_key() -> None:
    token = new_token(TokenKind.CLIENT_SECRET)
    stored = token_digest(KEY, token)
    assert digest_matches(KEY, token, stored)
    assert not digest_matches(KEY, new_token(TokenKind.CLIENT_SECRET), stored)
    assert not digest_matches(secrets.token_bytes(32), token, stored)
    assert not digest_matches(KEY, token, None)
    assert not digest_matches(KEY, token, "")
    assert not digest_matches(KEY, token, stored.upper())


def test_digest_matches_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    token = new_token(TokenKind.REFRESH_TOKEN)
    stored = token_digest(KEY, token)
    assert digest_matches(KEY, token, stored)
    assert not digest_matches(KEY, "kpr_wrong", stored)
    assert [b for _, b in compared] == [stored, stored]
