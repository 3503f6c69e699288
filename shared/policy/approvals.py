"""Approval requests (docs/product.md, "Approval requests"; Entra's admin consent
workflow): which apps need an approval, who may ask for one, who may decide it, and how
long a request stays open. Auth (the consent gate), the registry (requests, suspension)
and the role matrix ask these functions.

- An app's state in an environment is its policy entry's, else the environment's
  `default_app_state` (`allowed` unless the accountant sets it).
- A user consents themselves only to an `allowed` app, and only with a template that may
  consent. A user who may not consent to an app (its template may not, or the app needs
  approval) may request it when the environment's request templates name its template
  (by default: the consent templates); never to a blocked app, never an employee or an
  accountant (they consent for no debtor).
- Accountants decide any request of their environment; a user who may consent decides
  the requests for its own debtor whose companies all lie within its reach, never its own.
- An approved connection stays allowed (SPEC section 3's template rule) while its user
  keeps a template that may request.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import ColumnElement, exists, not_
from sqlmodel import col

from shared.models import (
    App,
    AppState,
    AppStatus,
    ConsentRequest,
    ConsentRequestCompany,
    Environment,
    User,
    UserTemplate,
)
from shared.policy.consent import (
    CONSENT_CAPABLE,
    checked_templates,
    consent_templates,
    may_consent,
    may_link,
)
from shared.policy.reach import user_company_ids

# A pending request reads as `expired` this long after it was made (or last renewed by
# the requester asking again).
REQUEST_LIFETIME = timedelta(days=30)
# The templates an environment may let request: those that can ever consent.
REQUEST_CAPABLE = CONSENT_CAPABLE


def check_request_templates(templates: list[UserTemplate] | None
                            ) -> list[UserTemplate] | None:
    """The templates, sorted and unique, if an environment may let them request apps;
    ValueError naming those it may not (an employee or an accountant never may)."""
    return checked_templates(templates, REQUEST_CAPABLE, "request apps")


def request_templates(environment: Environment | None) -> list[str]:
    """The templates that may request an app they may not consent to, in the order of
    `UserTemplate` (the environment's list; by default its consent templates)."""
    if environment is None or environment.approval_request_templates is None:
        allowed = set(consent_templates(environment))
    else:
        allowed = set(environment.approval_request_templates) & REQUEST_CAPABLE
    return [t.value for t in UserTemplate if t in allowed]


def app_state(entry: str | None, environment: Environment | None) -> AppState:
    """The app's state: its policy entry's, else the environment's default."""
    return state_of(entry, None if environment is None else environment.default_app_state)


def state_of(entry: str | None, default: str | None) -> AppState:
    """`app_state` from the entry's state and the environment's `default_app_state`."""
    if entry is not None:
        return AppState(entry)
    return AppState(default or AppState.ALLOWED)


def may_consent_to(user: User, environment: Environment | None, state: AppState) -> bool:
    """Whether `user` may link an app in this state themselves, now."""
    return state == AppState.ALLOWED and may_consent(user, environment)


def may_request(user: User, environment: Environment | None, state: AppState) -> bool:
    """Whether `user` may ask for approval of an app in this state (one it may not
    consent to itself)."""
    return (state != AppState.BLOCKED and user.active
            and not may_consent_to(user, environment, state)
            and user.template in request_templates(environment))


def approval_holds(user: User, environment: Environment | None) -> bool:
    """Whether an approved connection of `user` counts as allowed by the template rule."""
    return user.template in request_templates(environment)


def may_decide(user: User, environment: Environment | None, *, requester_id: uuid.UUID,
               debtor_id: uuid.UUID, company_ids: Iterable[uuid.UUID],
               reach: Iterable[uuid.UUID] | None) -> bool:
    """Whether `user` may approve or deny a request of `requester_id` for `debtor_id` and
    these companies. `reach`: the companies the user reaches (None: all of its debtor's,
    as for a master client)."""
    if not user.active or environment is None or user.environment_id != environment.id:
        return False
    if user.template == UserTemplate.ACCOUNTANT:
        return True
    if (user.id == requester_id or user.debtor_id != debtor_id
            or user.template not in consent_templates(environment)):
        return False
    return reach is None or set(company_ids) <= set(reach)


def decidable(user: User, environment: Environment | None
              ) -> list[ColumnElement[bool]] | None:
    """`may_decide` as SQL conditions on `consent_requests`, for the list of what `user`
    may decide; None when it may decide none."""
    where: list[ColumnElement[bool]] = [col(ConsentRequest.environment_id) == user.environment_id]
    if user.template == UserTemplate.ACCOUNTANT:
        return where
    reach = user_company_ids(user)
    if (user.debtor_id is None or reach is None
            or user.template not in consent_templates(environment)):
        return None
    outside = exists().where(
        col(ConsentRequestCompany.request_id) == ConsentRequest.id,
        not_(col(ConsentRequestCompany.company_id).in_(reach)))
    return [*where, col(ConsentRequest.debtor_id) == user.debtor_id,
            col(ConsentRequest.user_id) != user.id, not_(outside)]


def suspension_reason(user: User, app: App, environment: Environment, state: AppState,
                      approved: bool = False) -> str | None:
    """Why a connection of `user` to `app` may not work now, or None if it may.
    `approved`: the connection was recorded by an approved consent request."""
    if not may_link(app.partner_id, environment):
        return "app_not_admitted"
    if not user.active:
        return "user_deactivated"
    if user.template not in consent_templates(environment) and not (
            approved and approval_holds(user, environment)):
        return "user_may_not_consent"
    if app.status != AppStatus.ACTIVE:
        return "app_suspended"
    if state == AppState.BLOCKED:
        return "app_blocked"
    return None
