"""Concurrent first appends to a new environment's audit chain.

A new environment has no chain head yet, so there is nothing to lock: without creating
the head first, two first appends both insert one and the second fails on its primary key
(seen as a 500 when several users of a fresh environment consented at the same moment).
"""

from __future__ import annotations

import threading

from sqlalchemy.orm import Session, sessionmaker

from shared.audit import Actor, append, verify_environment
from shared.models import AuditHead
from tests.fixtures.factories import make_environment

WRITERS = 8


def test_concurrent_first_appends_all_commit_in_one_gapless_chain(
    committing_sessions: sessionmaker[Session],
) -> None:
    with committing_sessions() as session:
        environment_id = make_environment(session).id
        session.commit()

    barrier = threading.Barrier(WRITERS)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            with committing_sessions() as session:
                barrier.wait()
                append(session, environment_id, "consent.granted", Actor("user", str(n)),
                       "connection", n)
                session.commit()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    with committing_sessions() as session:
        assert verify_environment(session, environment_id) == []
        head = session.get(AuditHead, environment_id)
        assert head is not None and head.seq == WRITERS
