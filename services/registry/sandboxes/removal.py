"""Deleting a sandbox: the environment and everything in it, its connections and their
tokens included, in one transaction. The tokens of its connections, families and logins
are refused from the next call on (their status is published after the commit)."""

from __future__ import annotations

import uuid

import structlog
from sqlalchemy import Delete, or_
from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.audit import Actor
from shared.models import (
    Absence,
    AccessReview,
    AccessReviewItem,
    AuditCheckpoint,
    AuditEvent,
    AuditHead,
    AuthorizationCode,
    BankAccount,
    Company,
    Connection,
    ConnectionCompany,
    ConsentReceipt,
    ConsentRequest,
    ConsentRequestCompany,
    Debtor,
    Employee,
    Employment,
    Environment,
    EnvironmentAppPolicy,
    Event,
    LeaveBalance,
    LeaveRequest,
    PayrollRun,
    RefreshToken,
    TokenFamily,
    User,
    UserCompany,
    WageComponent,
    WebhookAttempt,
    WebhookDelivery,
)
from shared.status import Subject
from shared.unit_of_work import unit_of_work

log = structlog.get_logger("koppel.sandboxes")
# The employees' own rows, then what they belong to (children before parents).
EMPLOYEE_ROWS = (Absence, BankAccount, Employment, LeaveBalance, LeaveRequest, WageComponent,
                 PayrollRun)


async def remove(session: AsyncSession, environment: Environment, actor: Actor) -> None:
    """Delete the sandbox and everything in it."""
    env = environment.id
    await _publish(session, _users(env), _connections(env), _families(env))
    for statement in deletions(env):
        await session.exec(statement)
    await session.delete(environment)
    await session.flush()
    # The sandbox's own audit chain goes with it: the deletion is logged instead.
    log.info("sandbox.deleted", sandbox_id=str(env), partner_id=str(
        environment.sandbox_partner_id), actor_type=actor.type, actor_id=actor.id)


def _users(env: uuid.UUID):
    return select(User.id).where(User.environment_id == env)


def _connections(env: uuid.UUID):
    return select(Connection.id).where(Connection.environment_id == env)


def _families(env: uuid.UUID):
    return select(TokenFamily.id).where(or_(
        col(TokenFamily.environment_id) == env, col(TokenFamily.user_id).in_(_users(env)),
        col(TokenFamily.connection_id).in_(_connections(env))))


def deletions(env: uuid.UUID) -> list[Delete]:
    """The deletes that empty the environment, children before parents (SQLite and
    PostgreSQL check every foreign key: a row left behind fails the environment's
    delete). test_sandboxes.py holds this list to every table that refers to an
    environment, its users or its connections."""
    users, connections, families = _users(env), _connections(env), _families(env)
    events = select(Event.id).where(Event.environment_id == env)
    deliveries = select(WebhookDelivery.id).where(col(WebhookDelivery.event_id).in_(events))
    return [
        delete(WebhookAttempt).where(col(WebhookAttempt.delivery_id).in_(deliveries)),
        delete(WebhookDelivery).where(col(WebhookDelivery.event_id).in_(events)),
        delete(Event).where(col(Event.environment_id) == env),
        delete(AuthorizationCode).where(or_(
            col(AuthorizationCode.user_id).in_(users),
            col(AuthorizationCode.connection_id).in_(connections),
            col(AuthorizationCode.family_id).in_(families))),
        delete(RefreshToken).where(col(RefreshToken.family_id).in_(families)),
        delete(TokenFamily).where(or_(
            col(TokenFamily.environment_id) == env, col(TokenFamily.user_id).in_(users),
            col(TokenFamily.connection_id).in_(connections))),
        # Access reviews refer to the connections and users (items) and the accountant
        # who made them (reviews).
        delete(AccessReviewItem).where(col(AccessReviewItem.environment_id) == env),
        delete(AccessReview).where(col(AccessReview.environment_id) == env),
        # Consent requests refer to the requester, the decider and the companies.
        delete(ConsentRequestCompany).where(col(ConsentRequestCompany.request_id).in_(
            select(ConsentRequest.id).where(ConsentRequest.environment_id == env))),
        delete(ConsentRequest).where(col(ConsentRequest.environment_id) == env),
        delete(ConsentReceipt).where(col(ConsentReceipt.environment_id) == env),
        delete(ConnectionCompany).where(col(ConnectionCompany.connection_id).in_(connections)),
        delete(Connection).where(col(Connection.environment_id) == env),
        delete(EnvironmentAppPolicy).where(col(EnvironmentAppPolicy.environment_id) == env),
        delete(AuditCheckpoint).where(col(AuditCheckpoint.environment_id) == env),
        delete(AuditEvent).where(col(AuditEvent.environment_id) == env),
        delete(AuditHead).where(col(AuditHead.environment_id) == env),
        delete(UserCompany).where(col(UserCompany.user_id).in_(users)),
        delete(User).where(col(User.environment_id) == env),
        *(delete(model).where(col(model.environment_id) == env) for model in EMPLOYEE_ROWS),
        delete(Employee).where(col(Employee.environment_id) == env),
        delete(Company).where(col(Company.environment_id) == env),
        delete(Debtor).where(col(Debtor.environment_id) == env),
    ]


async def _publish(session: AsyncSession, users, connections, families) -> None:
    """After the commit: the connections, token families and logins stop working."""
    work = unit_of_work(session)
    for connection_id in (await session.exec(connections)).all():
        work.publish_status(Subject.CONNECTION, connection_id, False)
    for family_id in (await session.exec(families)).all():
        work.publish_status(Subject.FAMILY, family_id, False)
    user_ids: list[uuid.UUID] = list((await session.exec(users)).all())
    for user_id in user_ids:
        work.publish_status(Subject.USER, user_id, False)
        work.sign_out(user_id)
