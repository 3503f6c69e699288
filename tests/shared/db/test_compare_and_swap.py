"""Single use by compare-and-swap: of two racing redemptions exactly one wins."""

import threading
import time
import uuid

from sqlalchemy import Engine, Update, update
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from shared.db.types import utcnow
from shared.models import AuthorizationCode, UserTemplate
from tests.fixtures.factories import (
    make_app,
    make_authorization_code,
    make_environment,
    make_token_family,
    make_user,
)


def consume(code_id: uuid.UUID) -> Update:
    """UPDATE authorization_codes SET consumed_at=:now WHERE id=:id AND consumed_at IS NULL"""
    return (
        update(AuthorizationCode)
        .where(AuthorizationCode.id == code_id, AuthorizationCode.consumed_at.is_(None))
        .values(consumed_at=utcnow())
    )


def _code(session: Session) -> AuthorizationCode:
    environment = make_environment(session)
    user = make_user(session, environment, template=UserTemplate.ACCOUNTANT)
    return make_authorization_code(session, make_token_family(session, make_app(session), user))


def test_two_racing_redemptions_consume_a_code_once(
    engine: Engine, committing_sessions: sessionmaker[Session]
) -> None:
    with committing_sessions() as session, session.begin():
        code_id = _code(session).id
    start = threading.Barrier(2, timeout=30)
    rowcounts: list[int] = []
    errors: list[BaseException] = []

    def redeem() -> None:
        try:
            with engine.connect() as conn:
                start.wait()
                with conn.begin():
                    rowcounts.append(conn.execute(consume(code_id)).rowcount)
                    # Stay in the transaction, so the other UPDATE has to wait for this one.
                    time.sleep(0.2)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=redeem) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(rowcounts) == [0, 1]
    with committing_sessions() as session:
        assert session.get(AuthorizationCode, code_id).consumed_at is not None


def test_a_later_redemption_finds_the_code_spent(db_session: Session) -> None:
    code = _code(db_session)
    first = db_session.execute(consume(code.id))
    second = db_session.execute(consume(code.id))
    assert (first.rowcount, second.rowcount) == (1, 0)
