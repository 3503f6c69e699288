"""Who may link third-party apps (docs/product.md section 3). Auth (the consent gate),
the registry and the command line all ask these functions; when a connection must stop
working is `approvals.suspension_reason` (it also knows the app states)."""

from __future__ import annotations

import uuid

from shared.models import DEFAULT_CONSENT_TEMPLATES, Environment, User, UserTemplate

# The templates an environment may let consent. Never an accountant (consent is given
# per debtor, and an accountant belongs to none) nor a self-service employee (a connection
# covers companies, and an employee reaches only its own record).
CONSENT_CAPABLE = frozenset(DEFAULT_CONSENT_TEMPLATES)


def check_consent_templates(templates: list[UserTemplate] | None) -> list[UserTemplate] | None:
    """The templates, sorted and unique, if an environment may let them consent;
    ValueError naming those it may not (for the API's validation)."""
    return checked_templates(templates, CONSENT_CAPABLE, "consent")


def checked_templates(templates: list[UserTemplate] | None, capable: frozenset,
                      verb: str) -> list[UserTemplate] | None:
    """`templates` sorted and unique if each is in `capable`; ValueError naming those
    that are not ("these templates can never <verb>")."""
    if templates is None:
        return None
    refused = sorted(set(templates) - capable)
    if refused:
        raise ValueError(f"these templates can never {verb}: {', '.join(refused)}")
    return sorted(set(templates))


def consent_templates(environment: Environment | None) -> list[str]:
    """The templates that may link third-party apps in the environment (its consent
    policy; the default when it has none), in the order of `UserTemplate`."""
    allowed: set[str]
    if environment is None or environment.consent_templates is None:
        allowed = set(DEFAULT_CONSENT_TEMPLATES)
    else:
        allowed = set(environment.consent_templates) & CONSENT_CAPABLE
    return [t.value for t in UserTemplate if t in allowed]


def may_consent(user: User, environment: Environment | None) -> bool:
    """Whether `user` may link a third-party app now."""
    return user.active and user.template in consent_templates(environment)


def may_link(app_partner_id: uuid.UUID | None, environment: Environment | None) -> bool:
    """Whether an app of this partner may be linked in the environment at all: a
    partner's sandbox admits only that partner's own apps (shared/policy/sandboxes.py);
    a customer's environment any (its app policy and consent rules decide the rest)."""
    if environment is None or environment.sandbox_partner_id is None:
        return True
    return app_partner_id is not None and app_partner_id == environment.sandbox_partner_id
