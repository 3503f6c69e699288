"""A new wording document is stored in a transaction of its own on PostgreSQL: a long
act (a bulk revoke: one transaction, connection after connection) and a user's revoke of
one of its connections, both needing the same new document, do not deadlock (inserted in
the long act's transaction, the document stayed uncommitted; the user's act waited for it
while holding the connection the long act wanted next)."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text

from shared import receipts
from shared.attestation import active_attestation_key
from shared.models import Connection
from shared.receipts import Act
from shared.vault import KeyRing, SecretBox
from tests.fixtures.factories import make_connection
from tests.services.registry.conftest import World

pytestmark = pytest.mark.postgres_only


def test_two_acts_needing_one_new_wording_do_not_deadlock(world: World, keyring: KeyRing) -> None:
    user = world.a.users["master_client"]
    with world.sessions() as s:
        active_attestation_key(s, SecretBox(keyring))
        c1 = make_connection(s, user, world.apps[0], debtor=world.a.debtors[1],
                             scopes=["employee.bankaccount.read"])
        c2 = make_connection(s, user, world.apps[1], debtor=world.a.debtors[1],
                             scopes=["employee.bankaccount.read"])
        s.commit()
        ids = c1.id, c2.id
    errors: list[BaseException] = []
    t2_waiting = threading.Event()

    def bulk() -> None:  # the accountant's bulk revoke: c1, then c2, one transaction
        with world.sessions() as s:
            try:
                s.execute(text("SET lock_timeout = '20s'"))
                a = s.get(Connection, ids[0], with_for_update=True)
                a.status = "revoked"
                receipts.issue(s, a, Act.REVOKED, "system:x", lang="nl", issuer="i",
                               keys=keyring)  # stores the new wording
                t2_waiting.wait(5)
                time.sleep(1)
                b = s.get(Connection, ids[1], with_for_update=True)  # held by the user
                b.status = "revoked"
                receipts.issue(s, b, Act.REVOKED, "system:x", lang="nl", issuer="i",
                               keys=keyring)
                s.commit()
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

    def single() -> None:  # the user revokes c2 meanwhile
        time.sleep(0.5)
        with world.sessions() as s:
            try:
                s.execute(text("SET lock_timeout = '20s'"))
                b = s.get(Connection, ids[1], with_for_update=True)
                b.status = "revoked"
                t2_waiting.set()
                receipts.issue(s, b, Act.REVOKED, "system:x", lang="nl", issuer="i",
                               keys=keyring)  # the same wording: no wait for the bulk
                s.commit()
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

    threads = [threading.Thread(target=bulk), threading.Thread(target=single)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, [type(e).__name__ + ": " + str(e).splitlines()[0] for e in errors]
    with world.sessions() as s:
        assert [s.get(Connection, i).status for i in ids] == ["revoked", "revoked"]
