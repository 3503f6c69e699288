"""How `koppel demo seed` names a demo environment's logins and client (the made-up
payroll data itself is in shared/demo/data.py)."""

from __future__ import annotations

import re

from cli.output import CliError

MAX_LABEL = 63  # one DNS label


def slug_for(name: str) -> str:
    """The lower-case DNS label that demo emails and the client id derive from."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:MAX_LABEL].strip("-")
    if not slug:
        raise CliError(f"the demo name {name!r} needs at least one letter or digit")
    return slug


def demo_domain(slug: str) -> str:
    """The email domain of the demo environment's logins and employees."""
    return f"{slug}.koppel.test"


def client_id_for(slug: str) -> str:
    """The client id of the demo environment's first-party client."""
    return f"koppel-web-{slug}"
