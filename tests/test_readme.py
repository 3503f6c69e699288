"""The README's configuration table names every setting Koppel reads."""

from __future__ import annotations

from shared.config import Settings
from tests.fixtures.backend import REPO_ROOT


def test_every_setting_is_in_the_readme() -> None:
    readme = (REPO_ROOT / "README.md").read_text()

    missing = [
        f"KOPPEL_{name.upper()}"
        for name in Settings.model_fields
        if f"`KOPPEL_{name.upper()}`" not in readme
    ]

    assert not missing, f"document these in README.md's configuration table: {missing}"
