"""Every query of consent: the user, their environment and reach, the app policy, and
the connection a consent creates or widens."""

from __future__ import annotations

import uuid

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, delete, select

from shared import policy
from shared.models import (
    App,
    Company,
    Connection,
    ConnectionCompany,
    ConnectionStatus,
    Debtor,
    Environment,
    EnvironmentAppPolicy,
    TokenFamily,
    User,
)


def user(session: Session, user_id: str | uuid.UUID) -> User | None:
    return session.get(User, uuid.UUID(str(user_id)))


def environment(session: Session, environment_id: uuid.UUID) -> Environment | None:
    return session.get(Environment, environment_id)


def app_partner_id(session: Session, app_id: uuid.UUID) -> uuid.UUID | None:
    """The partner whose app this is (None for a first-party app or an unknown id)."""
    return session.exec(select(App.partner_id).where(App.id == app_id)).first()


def app_policy(
    session: Session, environment_id: uuid.UUID, app_id: uuid.UUID
) -> EnvironmentAppPolicy | None:
    """The environment's policy row for the app, if it has one."""
    return session.get(EnvironmentAppPolicy, (environment_id, app_id))


def debtor(session: Session, debtor_id: uuid.UUID) -> Debtor | None:
    return session.get(Debtor, debtor_id)


def user_companies(session: Session, of: User) -> list[Company]:
    """The companies `of` reaches, by the policy's one definition of them."""
    stmt = policy.user_companies(of)
    return list(session.exec(stmt).all()) if stmt is not None else []


def live_connection(
    session: Session, user_id: uuid.UUID, app_id: uuid.UUID, debtor_id: uuid.UUID,
    *, for_update: bool = False,
) -> Connection | None:
    """The user's connection to the app for the debtor, unless it was revoked; locked
    until the transaction ends with `for_update` (a consent changing it reads its scopes
    and companies only after any other consent on it has committed)."""
    stmt = select(Connection).where(
        Connection.user_id == user_id,
        Connection.app_id == app_id,
        Connection.debtor_id == debtor_id,
        col(Connection.status) != ConnectionStatus.REVOKED,
    )
    if for_update:  # and read afresh, not from an earlier load in this session
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return session.exec(stmt).first()


def claim_connection(session: Session, environment_id: uuid.UUID, user_id: uuid.UUID,
                     app_id: uuid.UUID, debtor_id: uuid.UUID) -> tuple[Connection, bool]:
    """A new connection row (no scopes yet) and True; or, when another consent of the
    user to the app for the debtor made one meanwhile (the insert meets
    `uq_connections_live` once that consent commits), that one, locked, and False."""
    connection = Connection(environment_id=environment_id, user_id=user_id, app_id=app_id,
                            debtor_id=debtor_id, scopes=[])
    try:
        with session.begin_nested():
            session.add(connection)
            session.flush()
    except IntegrityError:
        existing = live_connection(session, user_id, app_id, debtor_id, for_update=True)
        if existing is None:
            raise
        return existing, False
    return connection, True


def company_ids(session: Session, connection_id: uuid.UUID) -> set[uuid.UUID]:
    """The companies the connection's consent names now."""
    return set(session.exec(select(ConnectionCompany.company_id).where(
        ConnectionCompany.connection_id == connection_id)).all())


def save_connection(
    session: Session, connection: Connection, company_ids: list[uuid.UUID]
) -> None:
    """Write the connection and make `company_ids` its companies, exactly."""
    session.add(connection)
    session.flush()
    session.exec(
        delete(ConnectionCompany).where(col(ConnectionCompany.connection_id) == connection.id)
    )
    for company_id in sorted(company_ids):
        session.add(ConnectionCompany(connection_id=connection.id, company_id=company_id))


def live_family_ids(session: Session, connection_id: uuid.UUID) -> list[uuid.UUID]:
    """The token families of the connection that are not revoked yet."""
    return list(session.exec(
        select(TokenFamily.id).where(
            TokenFamily.connection_id == connection_id,
            col(TokenFamily.revoked_at).is_(None),
        )
    ).all())
