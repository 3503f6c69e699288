"""The kinds of caller the policy knows (docs/product.md section 3 and 4).

A caller's kind follows from its verified token and, for a first-party user token, from
the user's template as it is now in the database (never from a claim that could be stale).
"""

from __future__ import annotations

from enum import StrEnum

from shared.models import UserTemplate


class CallerKind(StrEnum):
    """Who calls. The six user templates are first-party user tokens (a user signed in to
    one of the SaaS's own apps); `connection` is a third-party app acting for the user who
    linked it; the three app kinds call for themselves (client credentials)."""

    CONNECTION = "connection"
    ACCOUNTANT = UserTemplate.ACCOUNTANT.value
    MASTER_CLIENT = UserTemplate.MASTER_CLIENT.value
    COMPANY = UserTemplate.COMPANY.value
    HR_MANAGER = UserTemplate.HR_MANAGER.value
    PAYROLL_HR_MANAGER = UserTemplate.PAYROLL_HR_MANAGER.value
    EMPLOYEE = UserTemplate.EMPLOYEE.value
    PARTNER_APP = "partner_app"
    FIRST_PARTY_APP = "first_party_app"
    PLATFORM_APP = "platform_app"


USERS = frozenset({CallerKind.ACCOUNTANT, CallerKind.MASTER_CLIENT, CallerKind.COMPANY,
                   CallerKind.HR_MANAGER, CallerKind.PAYROLL_HR_MANAGER, CallerKind.EMPLOYEE})
# Users who work on the payroll of the companies they reach (everyone but self-service).
STAFF = USERS - {CallerKind.EMPLOYEE}
APPS = frozenset({CallerKind.PARTNER_APP, CallerKind.FIRST_PARTY_APP, CallerKind.PLATFORM_APP})
# Callers that act for a person on payroll data.
DATA_READERS = USERS | {CallerKind.CONNECTION}
DATA_WRITERS = STAFF | {CallerKind.CONNECTION}
# First-party apps on their own behalf: bound to an environment, or platform-wide.
PROVISIONERS = frozenset({CallerKind.FIRST_PARTY_APP, CallerKind.PLATFORM_APP})


def user_kind(template: str) -> CallerKind:
    """The caller kind of a first-party token of a user with `template`."""
    return CallerKind(UserTemplate(template).value)
