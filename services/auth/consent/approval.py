"""Approval requests on the consent page (docs/product.md, "Approval requests"): a user
who may not link an app itself but may request it (shared/policy/approvals.py) sees a
page that says an approval is needed and asks why; submitting records a consent request
(requester, app, scopes, debtor and the companies within the requester's reach) and
sends the browser back to the app with `access_denied` and a description that says the
approval is pending. The accountants and the users who may consent for the debtor
decide it in the registry (services/registry/approvals/)."""

from __future__ import annotations

import uuid

from sqlmodel import col, delete, select

from services.auth.oauth2.authorization import Checked, Failure, error_location
from services.auth.oauth2.context import AuthContext
from shared.audit import Actor, append
from shared.models import (
    Connection,
    ConsentRequest,
    ConsentRequestCompany,
    ConsentRequestStatus,
    User,
)
from shared.policy.approvals import REQUEST_LIFETIME
from shared.scopes import CONSENT_SCOPES, SCOPES

MAX_JUSTIFICATION = 1000
# What the app reads in error_description (RFC 6749 section 4.1.2.1: printable ASCII,
# no quote or backslash).
PENDING = ("approval is pending: the request was sent to the approvers of the user's "
           "environment; the app may ask again once it is approved")


def requested_scopes(checked: Checked, connection: Connection | None) -> list[str]:
    """The consent scopes an approval would grant: the connection's and the requested."""
    requested = [s for s in checked.scopes if s in CONSENT_SCOPES]
    held = list(connection.scopes) if connection is not None else []
    return list(dict.fromkeys([*held, *requested]))


def open_request(ctx: AuthContext, user_id: uuid.UUID, app_id: uuid.UUID,
                 debtor_id: uuid.UUID) -> ConsentRequest | None:
    """The user's pending, unexpired request for the app and debtor, if any."""
    return ctx.session.exec(select(ConsentRequest).where(
        ConsentRequest.user_id == user_id, ConsentRequest.app_id == app_id,
        ConsentRequest.debtor_id == debtor_id,
        ConsentRequest.status == ConsentRequestStatus.PENDING,
        col(ConsentRequest.expires_at) > ctx.now)).first()


def page_context(ctx: AuthContext, checked: Checked, user: User,
                 connection: Connection | None, scope_of, lang: str) -> dict:
    """What the approval page shows: the app, the scopes to request, the debtor and the
    companies the request covers (the requester's), and whether one is pending."""
    debtor = scope_of.debtors[0]
    scopes = requested_scopes(checked, connection)
    pending = open_request(ctx, user.id, uuid.UUID(checked.app_id), debtor.id)
    return {
        "app": checked.app,
        "approval": True,
        "scopes": [SCOPES[s].localized(lang) for s in scopes if s in SCOPES],
        "requested_scopes": scopes,
        "debtors": [{"id": str(debtor.id), "name": debtor.name}],
        "companies": [{"id": str(c.id), "name": c.name}
                      for c in scope_of.companies[debtor.id]],
        "pending_request": pending is not None,
        "user": {"name": user.name, "email": user.email},
        "previously_linked": connection is not None,
        "kept_scopes": [],
        "dropped_scopes": [],
    }


def record(ctx: AuthContext, checked: Checked, user: User, context: dict,
           justification: str) -> str:
    """Record (or update: one pending request per user, app and debtor) the request the
    page showed; returns where the browser goes: back to the app, approval pending."""
    app_id = uuid.UUID(checked.app_id)
    debtor_id = uuid.UUID(context["debtors"][0]["id"])
    companies = sorted(uuid.UUID(c["id"]) for c in context["companies"])
    scopes = list(context["requested_scopes"])
    request = open_request(ctx, user.id, app_id, debtor_id)
    action = "consent_request.updated"
    if request is None:
        action = "consent_request.created"
        request = ConsentRequest(environment_id=user.environment_id, user_id=user.id,
                                 app_id=app_id, debtor_id=debtor_id, scopes=[],
                                 justification="", created_at=ctx.now,
                                 expires_at=ctx.now + REQUEST_LIFETIME)
    request.scopes = list(dict.fromkeys([*request.scopes, *scopes]))
    request.justification = justification
    request.updated_at = ctx.now
    ctx.session.add(request)
    ctx.session.flush()
    ctx.session.exec(delete(ConsentRequestCompany).where(
        col(ConsentRequestCompany.request_id) == request.id))
    for company_id in companies:
        ctx.session.add(ConsentRequestCompany(request_id=request.id, company_id=company_id))
    append(ctx.session, user.environment_id, action, Actor("user", str(user.id)),
           "consent_request", request.id, app_id=str(app_id), debtor_id=str(debtor_id),
           scopes=request.scopes, company_ids=[str(c) for c in companies],
           expires_at=request.expires_at.isoformat())
    failure = Failure("access_denied", PENDING, checked.redirect_uri, checked.state)
    return error_location(failure, ctx.settings.issuer)


def clean_justification(text: str) -> str | None:
    """The justification as stored, or None when it is empty or too long."""
    text = text.strip()
    return text if 0 < len(text) <= MAX_JUSTIFICATION else None
