"""Renewal on the consent page (docs/product.md section 3, "Expiry and renewal"): when
an app asks again for a connection whose consent lifetime ran out, the page shows
"renew" with the connection's own scopes and companies; the user's confirmation makes
the same connection active again with a new expiry. Remembered consent and
`prompt=none` never renew (decide.py sends those back to the app)."""

from __future__ import annotations

import uuid

from sqlmodel import col, select

from services.auth.consent import repository
from services.auth.consent.service import ConsentRefused, may_consent
from services.auth.oauth2.context import AuthContext
from shared import receipts
from shared.audit import Actor, append
from shared.models import Company, Connection, ConnectionCompany, User, is_expired
from shared.outbox import connection_event, emit
from shared.policy import lifetime
from shared.receipts import Act, Method
from shared.scopes import SCOPES
from shared.status import Subject
from shared.unit_of_work import unit_of_work


def page_context(ctx: AuthContext, connection: Connection, lang: str) -> dict:
    """What the page shows for a renewal: the connection's scopes, debtor and companies."""
    debtor = repository.debtor(ctx.session, connection.debtor_id)
    companies = ctx.session.exec(
        select(Company)
        .join(ConnectionCompany, col(ConnectionCompany.company_id) == Company.id)
        .where(ConnectionCompany.connection_id == connection.id)
        .order_by(col(Company.name), col(Company.id))
    ).all()
    return {
        "renew": True,
        "renew_connection_id": str(connection.id),
        "previously_linked": False,
        "scopes": [SCOPES[s].localized(lang) for s in connection.scopes if s in SCOPES],
        "kept_scopes": [],
        "dropped_scopes": [],
        "debtors": [{"id": str(connection.debtor_id), "name": debtor.name if debtor else ""}],
        "companies": [{"id": str(c.id), "name": c.name} for c in companies],
    }


def renew(ctx: AuthContext, user: User, connection_id: str, lang: str = "en",
          method: Method = Method.CONSENT_PAGE) -> Connection:
    """The user confirmed the renewal: the expired connection (`is_expired`: also one
    still `active` past its expiry) is active again with a new expiry from now;
    audited, `connection.renewed` sent, the status published, and its receipt signed
    (the page's words in `lang`; `method`: the page or the challenge API)."""
    # Locked: the worker's expiry job may be turning it `expired` right now.
    connection = ctx.session.get(Connection, uuid.UUID(connection_id), with_for_update=True,
                                 populate_existing=True)
    if (connection is None or connection.user_id != user.id
            or not is_expired(connection.status, connection.expires_at, ctx.now)):
        raise ConsentRefused("not_expired", "this link is not waiting for a renewal")
    if not may_consent(ctx, user):
        raise ConsentRefused("not_allowed")
    environment = repository.environment(ctx.session, connection.environment_id)
    renewal = lifetime.renew(connection, environment, ctx.now)
    ctx.session.add(connection)
    ctx.session.flush()
    append(ctx.session, connection.environment_id, "connection.renewed",
           Actor("user", str(user.id)), "connection", connection.id,
           **renewal.audit_fields(connection, str(method)))
    emit(ctx.session, **connection_event("connection.renewed", connection,
                                         changed_fields=renewal.changed_fields))
    unit_of_work(ctx.session).publish_status(Subject.CONNECTION, connection.id, True)
    receipts.issue(ctx.session, connection, Act.RENEWED, f"user:{user.id}", method=method,
                   lang=lang, issuer=ctx.settings.issuer, keys=ctx.keyring)
    return connection
