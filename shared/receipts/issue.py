"""Issuing a consent receipt: every consent act on a connection (granted, scopes added,
renewed, narrowed, approved, revoked, expired) signs one, in the act's own transaction,
chained to the connection's previous receipt (docs/product.md, "Consent receipts").

Two compact JWS of one receipt (one `jti`) are stored: the full one, and the partner's,
signed without the fields that say who the consenting user is (`user`, `actor`). Both
are signed by the active attestation key (shared/attestation.py) with header typ
`consent-receipt+jwt`.

The wording rule: an act a person performs on words shown to them (the consent page,
the challenge API's consent request, an approval, a renewal) carries the catalogue's
current text in that act's language; an act that only ends or shrinks a consent
(revoke, expiry, narrowing) restates what the previous receipt of the connection said
for each scope still held, in its language (a scope no earlier receipt carried, as on a
connection older than receipts, gets the catalogue's current text in that language, or
English).
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from joserfc import jws
from sqlmodel import Session, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.attestation import sign_attestation
from shared.audit_mac import current_keyring
from shared.config import get_settings
from shared.db.types import utcnow, uuid7
from shared.models import (
    App,
    Company,
    Connection,
    ConnectionCompany,
    ConsentReceipt,
    Debtor,
    ScopeWording,
    User,
)
from shared.receipts import wording
from shared.scopes import SENSITIVE_LEVELS
from shared.vault import KeyRing, SecretBox

RECEIPT_TYP = "consent-receipt+jwt"
# The claims that say who the consenting user (or the person acting) is: left out of the
# partner's receipt.
USER_FIELDS = ("user", "actor")


class Act(StrEnum):
    GRANTED = "granted"
    SCOPES_ADDED = "scopes_added"
    COMPANIES_ADDED = "companies_added"  # the same scopes, for more of the debtor's companies
    RENEWED = "renewed"
    NARROWED = "narrowed"
    APPROVED = "approved"
    REVOKED = "revoked"
    EXPIRED = "expired"


class Method(StrEnum):
    """How the consent was collected (Kantara's `collectionMethod`), or for an act of the
    registry, who did it."""

    CONSENT_PAGE = "consent_page"  # Koppel's consent page
    CHALLENGE_API = "challenge_api"  # a SaaS frontend's own screens (the challenge API)
    APPROVAL = "approval"  # a consent request approved
    USER = "user"  # the consenting user, through the registry's API
    ACCOUNTANT = "accountant"  # an accountant of the environment
    APP = "app"  # the app itself (disconnect, Grant Management, registration deleted)
    ACCESS_REVIEW = "access_review"  # an access review's decision
    SYSTEM = "system"  # Koppel's own rules: a consent lifetime, a user's reach


def method_of(by: str) -> Method:
    """The method of a registry act from its `by` string (`user:<id>`, `accountant:<id>`,
    `app:<client_id>`, `access_review:<id>`, `system:<rule>`)."""
    return Method(by.split(":", 1)[0])


_lock = threading.Lock()
_issuer: str | None = None


def use_issuer(issuer: str) -> None:
    """Receipts made in this process without an explicit issuer name this one (the
    runtime and the command line register their settings' issuer)."""
    global _issuer
    with _lock:
        _issuer = issuer


def _registered_issuer() -> str:
    with _lock:
        return _issuer if _issuer is not None else get_settings().issuer


@dataclass(frozen=True)
class Wording:
    """The scope wording a receipt carries and its language."""

    lang: str
    scopes: list[dict[str, str]]


def _wording(session: Session, connection: Connection, previous: ConsentReceipt | None,
             lang: str | None) -> Wording:
    if lang is not None:
        return Wording(lang, wording.current_wording(connection.scopes, lang))
    if previous is None:
        return Wording(wording.DEFAULT_LANG,
                       wording.current_wording(connection.scopes, wording.DEFAULT_LANG))
    row = session.get(ScopeWording, previous.wording_sha256)
    earlier = wording.parsed(row) if row is not None else {}
    return Wording(previous.lang, wording.carried_wording(connection.scopes, earlier,
                                                          previous.lang))


def previous_receipt(session: Session, connection_id: uuid.UUID) -> ConsentReceipt | None:
    """The connection's newest receipt."""
    return session.exec(select(ConsentReceipt).where(
        ConsentReceipt.connection_id == connection_id)
        .order_by(col(ConsentReceipt.seq).desc()).limit(1)).first()


def _subjects(session: Session, connection: Connection) -> dict[str, Any]:
    debtor = session.get(Debtor, connection.debtor_id)
    app = session.get(App, connection.app_id)
    user = session.get(User, connection.user_id)
    if debtor is None or app is None or user is None:  # foreign keys
        raise RuntimeError(f"connection {connection.id} refers to a missing row")
    companies = session.exec(
        select(Company).join(ConnectionCompany, col(ConnectionCompany.company_id) == Company.id)
        .where(ConnectionCompany.connection_id == connection.id)
        .order_by(col(Company.id))).all()
    return {
        "debtor": {"id": str(debtor.id), "name": debtor.name},
        "companies": [{"id": str(c.id), "name": c.name} for c in companies],
        "user": {"id": str(user.id), "template": str(user.template)},
        "app": {"client_id": app.client_id, "name": app.name,
                "publisher": app.publisher or app.name, "policy_url": app.policy_uri},
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def receipt_claims(*, issuer: str, receipt_id: uuid.UUID, issued_at: datetime, act: Act,
                   method: Method, actor: str, connection: Connection,
                   subjects: dict[str, Any], said: Wording, wording_sha256: str,
                   previous_id: uuid.UUID | None) -> dict[str, Any]:
    """The full receipt's claims (docs/product.md, "Consent receipts", names the
    standard fields they follow)."""
    return {
        "iss": issuer,
        "jti": str(receipt_id),
        "iat": int(issued_at.timestamp()),
        "act": act.value,
        "collectionMethod": method.value,
        "actor": actor,
        "connection_id": str(connection.id),
        "environment_id": str(connection.environment_id),
        **subjects,
        "language": said.lang,
        "scopes": said.scopes,
        "wording_sha256": wording_sha256,
        "sensitive": any(s["sensitivity"] in SENSITIVE_LEVELS for s in said.scopes),
        "expires_at": _iso(connection.expires_at),
        "previous_receipt_id": str(previous_id) if previous_id else None,
    }


def partner_claims(claims: dict[str, Any]) -> dict[str, Any]:
    """The claims of the partner's receipt: the full ones without the user's fields."""
    return {k: v for k, v in claims.items() if k not in USER_FIELDS}


def issue(session: Session, connection: Connection, act: Act, by: str, *,
          method: Method | None = None, lang: str | None = None, issuer: str | None = None,
          keys: KeyRing | SecretBox | None = None) -> ConsentReceipt:
    """Sign and store the receipt of `act` on `connection` (as it is after the act), in
    the session's transaction. `by`: who did it (`user:<id>`, `accountant:<id>`, ...);
    `method`: how the consent was collected (default: from `by`); `lang`: the language
    of the words the act showed (None: the wording is carried from the previous
    receipt); `issuer` and `keys` default to the process's (the runtime registers them)."""
    # The act's own change of the connection row goes first: on PostgreSQL it holds the
    # row until the commit, so two acts on one connection chain one after the other.
    session.add(connection)
    session.flush()
    previous = previous_receipt(session, connection.id)
    said = _wording(session, connection, previous, lang)
    digest = wording.store(session, wording.document_of(said.scopes))
    receipt_id, now = uuid7(), utcnow()
    claims = receipt_claims(
        issuer=issuer or _registered_issuer(), receipt_id=receipt_id, issued_at=now, act=act,
        method=method or method_of(by), actor=by, connection=connection,
        subjects=_subjects(session, connection), said=said, wording_sha256=digest,
        previous_id=previous.id if previous else None)
    box = keys if isinstance(keys, SecretBox) else SecretBox(keys or current_keyring())
    full = sign_attestation(session, box, RECEIPT_TYP, claims)
    partner = sign_attestation(session, box, RECEIPT_TYP, partner_claims(claims))
    row = ConsentReceipt(
        id=receipt_id, connection_id=connection.id, environment_id=connection.environment_id,
        seq=(previous.seq if previous else 0) + 1, act=act.value,
        collection_method=claims["collectionMethod"], issued_at=now,
        previous_receipt_id=previous.id if previous else None, lang=said.lang,
        wording_sha256=digest, kid=str(jws.extract_compact(full.encode()).headers()["kid"]),
        jws=full, partner_jws=partner)
    session.add(row)
    session.flush()
    return row


async def issue_async(session: AsyncSession, connection: Connection, act: Act, by: str, *,
                      method: Method | None = None, lang: str | None = None
                      ) -> ConsentReceipt:
    """`issue` for async code, on the same session and transaction."""
    return await session.run_sync(
        lambda sync: issue(cast(Session, sync), connection, act, by, method=method, lang=lang))
