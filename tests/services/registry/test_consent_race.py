"""Two consents of one user to one app at the same time (PostgreSQL): on a live
connection the second reads its scopes and companies only after the first committed
(its row is locked), and two first consents make one connection (the second goes on
with the row the first made), so each change is audited and receipted against what was
really there."""

from __future__ import annotations

import json
import threading
import uuid

import pytest
from joserfc import jws
from sqlmodel import col, delete, select

from services.auth.consent import repository, service
from services.auth.oauth2.context import AuthContext
from shared.attestation import active_attestation_key
from shared.config import Settings
from shared.models import Connection, ConnectionCompany, ConsentReceipt
from shared.vault import KeyRing, SecretBox
from tests.fixtures.factories import make_app, make_connection
from tests.services.registry.conftest import World

pytestmark = pytest.mark.postgres_only


def _receipt_companies(receipt: ConsentReceipt) -> set[str]:
    claims = json.loads(jws.extract_compact(receipt.jws.encode()).payload)
    return {c["id"] for c in claims["companies"]}


def _consent_twice(world: World, keyring: KeyRing, settings: Settings,
                   monkeypatch: pytest.MonkeyPatch, app_id: uuid.UUID,
                   first: list[uuid.UUID], second: list[uuid.UUID]) -> None:
    """Two consents of world A's master client to the app for its first debtor, at once:
    the first is held for a second just before it writes the companies (its locks and
    inserts taken), while the second tries meanwhile."""
    user, debtor = world.a.users["master_client"], world.a.debtors[0]
    inside, errors = threading.Event(), []
    real_save = repository.save_connection

    def held_save(session, connection, company_ids):
        if threading.current_thread().name == "first":
            inside.set()
            threading.Event().wait(1.0)  # the second tries meanwhile (and must wait)
        return real_save(session, connection, company_ids)

    monkeypatch.setattr(repository, "save_connection", held_save)

    def consent(chosen: list[uuid.UUID]) -> None:
        try:
            with world.sessions() as session:
                ctx = AuthContext(session=session, settings=settings, keyring=keyring,
                                  signer=None, redis=None)
                if threading.current_thread().name == "second":
                    inside.wait(20)
                service.grant(ctx, session.merge(user), app_id, debtor.id, chosen,
                              ["employee.info.read"])
                session.commit()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=consent, args=(first,), name="first"),
               threading.Thread(target=consent, args=(second,), name="second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors


def test_concurrent_consents_change_the_connection_one_after_the_other(
        world: World, keyring: KeyRing, settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    user, app = world.a.users["master_client"], world.apps[0]
    debtor = world.a.debtors[0]
    c1, c2 = (c.id for c in world.a.companies if c.debtor_id == debtor.id)
    with world.sessions() as session:
        active_attestation_key(session, SecretBox(keyring))
        connection = repository.live_connection(session, user.id, app.id, debtor.id) or \
            make_connection(session, session.merge(user), session.merge(app), debtor=debtor)
        connection.scopes = ["employee.info.read"]
        repository.save_connection(session, connection, [c1])
        session.exec(delete(ConsentReceipt).where(
            col(ConsentReceipt.connection_id) == connection.id))
        session.commit()
        connection_id = connection.id
    # The narrowing ({c1} again) first, the widening meanwhile.
    _consent_twice(world, keyring, settings, monkeypatch, app.id, [c1], [c1, c2])
    with world.sessions() as session:
        now = set(session.exec(select(ConnectionCompany.company_id).where(
            ConnectionCompany.connection_id == connection_id)).all())
        receipts = session.exec(select(ConsentReceipt).where(
            ConsentReceipt.connection_id == connection_id)
            .order_by(col(ConsentReceipt.seq))).all()
        assert session.get(Connection, connection_id) is not None
    # The narrowing changed nothing ({c1} was there); the widening came after it.
    assert now == {c1, c2}
    assert [r.act for r in receipts] == ["companies_added"]
    assert _receipt_companies(receipts[-1]) == {str(c1), str(c2)}


def test_two_first_consents_at_once_make_one_connection(
        world: World, keyring: KeyRing, settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two consents of one user to an app not linked yet, at the same time: the second's
    insert meets the first's row (uq_connections_live), and it goes on as a consent on
    that connection instead of failing: one connection, granted, then widened."""
    user, debtor = world.a.users["master_client"], world.a.debtors[0]
    c1, c2 = (c.id for c in world.a.companies if c.debtor_id == debtor.id)
    with world.sessions() as session:
        active_attestation_key(session, SecretBox(keyring))
        app = make_app(session, scopes=["employee.info.read", "offline_access"])
        session.commit()
        app_id = app.id
    _consent_twice(world, keyring, settings, monkeypatch, app_id, [c1], [c1, c2])
    with world.sessions() as session:
        [connection] = session.exec(select(Connection).where(
            Connection.app_id == app_id, Connection.user_id == user.id)).all()
        now = set(session.exec(select(ConnectionCompany.company_id).where(
            ConnectionCompany.connection_id == connection.id)).all())
        acts = [r.act for r in session.exec(select(ConsentReceipt).where(
            ConsentReceipt.connection_id == connection.id)
            .order_by(col(ConsentReceipt.seq))).all()]
    assert now == {c1, c2}
    assert acts == ["granted", "companies_added"]
