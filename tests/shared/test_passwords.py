"""The configured argon2id cost (KOPPEL_ARGON2_*): new hashes carry it, and a stored hash
verifies whatever cost is configured now, since it names its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared import passwords
from shared.config import Settings


@pytest.fixture
def restore_cost(settings: Settings) -> Iterator[None]:
    try:
        yield
    finally:
        passwords.use_settings(settings)


@pytest.mark.usefixtures("restore_cost")
def test_new_hashes_carry_the_configured_cost_and_old_ones_still_verify(
    settings: Settings,
) -> None:
    cheap = passwords.hash_password("correct horse")
    assert cheap.startswith("$argon2id$v=19$m=8,t=1,p=1$")

    passwords.use_settings(Settings(_env_file=None, env="test"))  # the defaults
    dear = passwords.hash_password("correct horse")

    assert dear.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert passwords.verify_password(cheap, "correct horse")
    assert not passwords.verify_password(cheap, "wrong horse")
    assert passwords.needs_rehash(cheap) and not passwords.needs_rehash(dear)
    passwords.use_settings(settings)
    assert passwords.verify_password(dear, "correct horse")
    assert not passwords.verify_password(None, "correct horse")
