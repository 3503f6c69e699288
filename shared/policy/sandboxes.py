"""Partner sandboxes (docs/product.md, "Sandboxes"): synthetic environments a partner
makes to try its apps on. What sets them apart from a customer's environment:

- a partner has at most `MAX_PER_PARTNER` and sees only its own (another's answers 404);
- only the owning partner's apps may be linked in one (`shared/policy/consent.py`);
- their logins live on a reserved email domain no customer's user may have;
- no customer-side route shows them: the directory API (the SaaS's provisioning, bound
  or platform-wide) does not reach them, and every other view is per environment.
"""

from __future__ import annotations

import unicodedata
import uuid
from typing import Protocol

MAX_PER_PARTNER = 5
# RFC 2606 `.invalid`: never a real mailbox. Each sandbox has its own subdomain.
RESERVED_DOMAIN = "sandbox.koppel.invalid"


class Marked(Protocol):
    """The column of an environment that marks a sandbox."""

    sandbox_partner_id: uuid.UUID | None


def sandbox_domain(sandbox_id: uuid.UUID) -> str:
    """The email domain of one sandbox's logins and employees: the sandbox's whole id
    (a UUIDv7's first 16 hex digits are only a timestamp and a per-process counter, so two
    registry workers could give two sandboxes the same prefix)."""
    return f"{sandbox_id.hex}.{RESERVED_DOMAIN}"


def _ascii_domain(domain: str) -> str | None:
    """The domain as DNS compares it (NFKC, IDNA, lower case, no trailing dot), or None
    when it has characters no domain may hold (format characters such as U+200B, spaces,
    anything IDNA refuses)."""
    folded = unicodedata.normalize("NFKC", domain).strip()
    if any(unicodedata.category(ch).startswith(("C", "Z")) for ch in folded):
        return None
    # NFKC folds fullwidth and other compatibility dots to "."; IDNA the ideographic ones.
    for dot in ("\u3002", "\uff61"):
        folded = folded.replace(dot, ".")
    try:
        return folded.encode("idna").decode("ascii").lower().rstrip(".")
    except UnicodeError:
        return None if not folded.isascii() else folded.lower().rstrip(".")


def reserved_email(email: str) -> bool:
    """Whether the address lies on the sandboxes' reserved domain, however it is spelled
    (case, fullwidth dots, IDNA forms); an address whose domain cannot be normalised
    counts as reserved, so it is refused too."""
    domain = _ascii_domain(email.rpartition("@")[2])
    if domain is None:
        return True
    return domain == RESERVED_DOMAIN or domain.endswith("." + RESERVED_DOMAIN)


def may_use_email(email: str, environment: Marked) -> bool:
    """A customer's user never gets an address on the reserved domain."""
    return environment.sandbox_partner_id is not None or not reserved_email(email)


def owned_by(environment: Marked | None, partner_id: uuid.UUID | None) -> bool:
    """Whether the environment is a sandbox of this partner (else: 404 to it)."""
    return (environment is not None and partner_id is not None
            and environment.sandbox_partner_id == partner_id)


def provisioner_reaches(environment: Marked) -> bool:
    """The directory API (the SaaS's own provisioning) never reaches a sandbox."""
    return environment.sandbox_partner_id is None
