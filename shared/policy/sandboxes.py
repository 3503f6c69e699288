"""Partner sandboxes (docs/product.md, "Sandboxes"): synthetic environments a partner
makes to try its apps on. What sets them apart from a customer's environment:

- a partner has at most `MAX_PER_PARTNER` and sees only its own (another's answers 404);
- only the owning partner's apps may be linked in one (`shared/policy/consent.py`);
- their logins live on a reserved email domain no customer's user may have;
- no customer-side route shows them: the directory API (the SaaS's provisioning, bound
  or platform-wide) does not reach them, and every other view is per environment.
"""

from __future__ import annotations

import uuid
from typing import Protocol

MAX_PER_PARTNER = 5
# RFC 2606 `.invalid`: never a real mailbox. Each sandbox has its own subdomain.
RESERVED_DOMAIN = "sandbox.koppel.invalid"


class Marked(Protocol):
    """The column of an environment that marks a sandbox."""

    sandbox_partner_id: uuid.UUID | None


def sandbox_domain(sandbox_id: uuid.UUID) -> str:
    """The email domain of one sandbox's logins and employees."""
    return f"{sandbox_id.hex[:16]}.{RESERVED_DOMAIN}"


def reserved_email(email: str) -> bool:
    """Whether the address lies on the sandboxes' reserved domain."""
    domain = email.rpartition("@")[2].strip().lower().rstrip(".")
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
