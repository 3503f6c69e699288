"""Consent requests (docs/product.md, "Approval requests"): listed for the accountants
and for the users who may consent for the request's debtor, decided by them, and seen by
their requesters. Who may decide which request is the policy's
(shared/policy/approvals.py `may_decide`); the list asks the same in SQL (`decidable`).

An approval records the connection for the requester: their reach now (the requested
companies they still reach), the requested scopes, `approved_by` the decider. A live
connection of the requester to the app for the debtor is widened (an expired one comes
back with a new expiry); a suspended one, a requester who may no longer have it, or a
request that is decided or expired answers 409.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.registry.approvals.schemas import ConsentRequestOut, Requester
from services.registry.connections.lifecycle import user_reach
from services.registry.connections.schemas import AppRef
from shared import receipts
from shared.audit import Actor, append_async
from shared.db.types import utcnow
from shared.errors import Conflict, NotFound
from shared.models import (
    App,
    Connection,
    ConnectionCompany,
    ConnectionStatus,
    ConsentRequest,
    ConsentRequestCompany,
    ConsentRequestStatus,
    Environment,
    EnvironmentAppPolicy,
    User,
    UserTemplate,
    is_expired,
)
from shared.outbox import connection_event, emit
from shared.pagination import after_id, check_limit, id_cursor
from shared.policy import lifetime
from shared.policy.approvals import app_state, decidable, may_decide, suspension_reason
from shared.policy.lifetime import after_widening
from shared.receipts import Act, Method
from shared.status import Subject
from shared.unit_of_work import unit_of_work

LIST = "consent_requests"
MINE = "my_consent_requests"
Status = ConsentRequestStatus


def effective_status(request: ConsentRequest, now: datetime) -> Status:
    """A pending request past its expiry reads as expired (never stored)."""
    if request.status == Status.PENDING and request.expires_at <= now:
        return Status.EXPIRED
    return Status(request.status)


def _status_filter(stmt, status: Status | None, now: datetime):
    if status is None:
        return stmt
    if status == Status.PENDING:
        return stmt.where(ConsentRequest.status == Status.PENDING,
                          col(ConsentRequest.expires_at) > now)
    if status == Status.EXPIRED:
        return stmt.where(ConsentRequest.status == Status.PENDING,
                          col(ConsentRequest.expires_at) <= now)
    return stmt.where(ConsentRequest.status == status)


async def _environment(session: AsyncSession, environment_id: uuid.UUID) -> Environment:
    environment = await session.get(Environment, environment_id)
    if environment is None:
        raise RuntimeError(f"environment {environment_id} is missing")
    return environment


def _select():
    return (select(ConsentRequest, App, User)
            .join(App, col(App.id) == ConsentRequest.app_id)
            .join(User, col(User.id) == ConsentRequest.user_id))


async def _out(session: AsyncSession, rows: list, now: datetime) -> list[ConsentRequestOut]:
    ids = [request.id for request, _, _ in rows]
    companies: dict[uuid.UUID, list[uuid.UUID]] = {i: [] for i in ids}
    if ids:
        for request_id, company_id in (await session.exec(
                select(ConsentRequestCompany.request_id, ConsentRequestCompany.company_id)
                .where(col(ConsentRequestCompany.request_id).in_(ids))
                .order_by(col(ConsentRequestCompany.company_id)))).all():
            companies[request_id].append(company_id)
    return [ConsentRequestOut(
        id=r.id, app=AppRef(client_id=app.client_id, name=app.name, publisher=app.publisher),
        requester=Requester(id=user.id, email=user.email, name=user.name,
                            template=user.template),
        debtor_id=r.debtor_id, company_ids=companies[r.id], scopes=list(r.scopes),
        justification=r.justification, status=effective_status(r, now),
        created_at=r.created_at, expires_at=r.expires_at, decided_by=r.decided_by,
        decided_at=r.decided_at, decision_reason=r.decision_reason,
        connection_id=r.connection_id) for r, app, user in rows]


async def _page(session: AsyncSession, key: bytes, kind: str, stmt, cursor: str | None,
                limit: int, status: Status | None, app: str | None
                ) -> tuple[list[ConsentRequestOut], str | None]:
    check_limit(limit)
    now = utcnow()
    stmt = _status_filter(stmt, status, now)
    if app is not None:
        stmt = stmt.where(App.client_id == app)
    after = after_id(key, kind, cursor)
    if after is not None:
        stmt = stmt.where(col(ConsentRequest.id) > after)
    rows = list((await session.exec(stmt.order_by(col(ConsentRequest.id))
                                    .limit(limit + 1))).all())
    more, rows = len(rows) > limit, rows[:limit]
    return (await _out(session, rows, now),
            id_cursor(key, kind, rows[-1][0].id) if more else None)


async def list_for_decider(session: AsyncSession, key: bytes, user: User, cursor: str | None,
                           limit: int, status: Status | None, app: str | None
                           ) -> tuple[list[ConsentRequestOut], str | None]:
    environment = None
    if user.template != UserTemplate.ACCOUNTANT:
        environment = await _environment(session, user.environment_id)
    conditions = decidable(user, environment)
    if conditions is None:
        check_limit(limit)
        return [], None
    return await _page(session, key, LIST, _select().where(*conditions), cursor, limit,
                       status, app)


async def list_mine(session: AsyncSession, key: bytes, user: User, cursor: str | None,
                    limit: int, status: Status | None, app: str | None
                    ) -> tuple[list[ConsentRequestOut], str | None]:
    stmt = _select().where(ConsentRequest.user_id == user.id,
                           ConsentRequest.environment_id == user.environment_id)
    return await _page(session, key, MINE, stmt, cursor, limit, status, app)


async def _companies(session: AsyncSession, request_id: uuid.UUID) -> set[uuid.UUID]:
    return set((await session.exec(select(ConsentRequestCompany.company_id).where(
        ConsentRequestCompany.request_id == request_id))).all())


async def _for_decision(session: AsyncSession, user: User, request_id: uuid.UUID
                        ) -> tuple[ConsentRequest, Environment]:
    """The request, locked, if `user` may decide it (the policy's may_decide); else 404.
    409 if it is decided or expired already."""
    request = (await session.exec(select(ConsentRequest).where(
        ConsentRequest.id == request_id).with_for_update())).first()
    if request is None or request.environment_id != user.environment_id:
        raise NotFound("no such consent request")
    environment = await _environment(session, user.environment_id)
    reach = None
    if user.template != UserTemplate.ACCOUNTANT:
        reach = await user_reach(session, user)
    if not may_decide(user, environment, requester_id=request.user_id,
                      debtor_id=request.debtor_id,
                      company_ids=await _companies(session, request.id), reach=reach):
        raise NotFound("no such consent request")
    status = effective_status(request, utcnow())
    if status != Status.PENDING:
        raise Conflict(f"this consent request is {status.value} already")
    return request, environment


async def one(session: AsyncSession, request_id: uuid.UUID, now: datetime
              ) -> ConsentRequestOut:
    rows = list((await session.exec(_select().where(ConsentRequest.id == request_id))).all())
    return (await _out(session, rows, now))[0]


def _decided(request: ConsentRequest, status: Status, by: str, reason: str | None,
             now: datetime) -> None:
    request.status = status
    request.decided_by, request.decided_at, request.decision_reason = by, now, reason
    request.updated_at = now


async def deny(session: AsyncSession, caller: User, request_id: uuid.UUID, reason: str
               ) -> ConsentRequestOut:
    request, _ = await _for_decision(session, caller, request_id)
    now = utcnow()
    _decided(request, Status.DENIED, f"user:{caller.id}", reason, now)
    session.add(request)
    await session.flush()
    await append_async(session, request.environment_id, "consent_request.denied",
                       Actor("user", str(caller.id)), "consent_request", request.id,
                       app_id=str(request.app_id), user_id=str(request.user_id),
                       debtor_id=str(request.debtor_id), reason=reason)
    return await one(session, request.id, now)


async def approve(session: AsyncSession, caller: User, request_id: uuid.UUID,
                  reason: str | None, lang: str = "en") -> ConsentRequestOut:
    request, environment = await _for_decision(session, caller, request_id)
    now = utcnow()
    requester = await session.get(User, request.user_id)
    app = await session.get(App, request.app_id)
    assert requester is not None and app is not None  # foreign keys
    entry = (await session.exec(select(EnvironmentAppPolicy.state).where(
        EnvironmentAppPolicy.environment_id == environment.id,
        EnvironmentAppPolicy.app_id == app.id))).first()
    why = suspension_reason(requester, app, environment, app_state(entry, environment),
                            approved=True)
    if why is not None:
        raise Conflict(f"the requester may not have this connection now ({why})")
    companies = await _companies(session, request.id) & await user_reach(session, requester)
    if requester.debtor_id != request.debtor_id or not companies:
        raise Conflict("the requester no longer reaches any of the requested companies")
    approved_by = f"user:{caller.id}"
    connection = await _record_connection(session, request, environment, companies,
                                          approved_by, now)
    # The approver decided on the catalogue's words in the approving call's language.
    await receipts.issue_async(session, connection, Act.APPROVED, approved_by,
                               method=Method.APPROVAL, lang=lang)
    _decided(request, Status.APPROVED, approved_by, reason, now)
    request.connection_id = connection.id
    session.add(request)
    await session.flush()
    await append_async(session, request.environment_id, "consent_request.approved",
                       Actor("user", str(caller.id)), "consent_request", request.id,
                       app_id=str(request.app_id), user_id=str(request.user_id),
                       debtor_id=str(request.debtor_id), connection_id=str(connection.id),
                       scopes=list(request.scopes), reason=reason)
    return await one(session, request.id, now)


async def _record_connection(session: AsyncSession, request: ConsentRequest,
                             environment: Environment, companies: set[uuid.UUID],
                             approved_by: str, now: datetime) -> Connection:
    """Create the requester's connection, or widen (and renew, if expired) its live one;
    audited as a consent approved by `approved_by`, evented and published."""
    connection = (await session.exec(select(Connection).where(
        Connection.user_id == request.user_id, Connection.app_id == request.app_id,
        Connection.debtor_id == request.debtor_id,
        col(Connection.status) != ConnectionStatus.REVOKED))).first()
    if connection is not None and connection.status == ConnectionStatus.SUSPENDED:
        raise Conflict("the requester's connection to this app is suspended")
    created = connection is None
    expired = connection is not None and is_expired(connection.status,
                                                    connection.expires_at, now)
    if connection is None:
        connection = Connection(environment_id=request.environment_id, user_id=request.user_id,
                                app_id=request.app_id, debtor_id=request.debtor_id, scopes=[])
        before: set[uuid.UUID] = set()
    else:
        before = set((await session.exec(select(ConnectionCompany.company_id).where(
            ConnectionCompany.connection_id == connection.id))).all())
    old_scopes = list(connection.scopes)
    connection.scopes = list(dict.fromkeys([*old_scopes, *request.scopes]))
    added = [s for s in connection.scopes if s not in old_scopes]
    renewal = lifetime.renew(connection, environment, now) if expired else None
    if renewal is None and (created or added):
        connection.expires_at = after_widening(environment, connection.scopes,
                                               None if created else connection.expires_at, now)
    connection.approved_by = approved_by
    connection.updated_at = now
    session.add(connection)
    await session.flush()
    covered = before | companies
    await session.exec(delete(ConnectionCompany).where(
        col(ConnectionCompany.connection_id) == connection.id))
    session.add_all([ConnectionCompany(connection_id=connection.id, company_id=c)
                     for c in sorted(covered)])
    await session.flush()
    unit_of_work(session).publish_status(Subject.CONNECTION, connection.id, True)
    approver = Actor("user", approved_by.removeprefix("user:"))
    if renewal is not None:  # an approval renews an expired connection
        await append_async(session, request.environment_id, "connection.renewed", approver,
                           "connection", connection.id,
                           **renewal.audit_fields(connection, "consent_request"))
        emit(session, **connection_event("connection.renewed", connection,
                                         changed_fields=renewal.changed_fields))
    await append_async(
        session, request.environment_id,
        "consent.granted" if created else "consent.scopes_added",
        approver, "connection", connection.id,
        app_id=str(connection.app_id), debtor_id=str(connection.debtor_id),
        user_id=str(connection.user_id), scopes=connection.scopes, added=added,
        company_ids=sorted(str(c) for c in covered), approved_by=approved_by,
        consent_request_id=str(request.id))
    changed = ["scopes", "company_ids"] if created or covered != before else ["scopes"]
    if created or added or covered != before:
        emit(session, **connection_event(
            "connection.created" if created else "connection.updated", connection,
            changed_fields=changed))
    return connection

