"""`koppel bench seed-connections`: a realistic, consistent environment of N connections."""

from __future__ import annotations

import json
import uuid
from collections import Counter

from sqlalchemy import func
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, col, select

from shared.db.types import utcnow
from shared.models import App, Company, Connection, ConnectionCompany, User
from tests.cli.conftest import Invoke


def test_seeds_n_consistent_connections(invoke: Invoke,
                                        committing_sessions: sessionmaker[Session]) -> None:
    result = invoke("bench", "seed-connections", "--environment", "Bench", "--count", "3000",
                    "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["connections"] == 3000
    env_id = uuid.UUID(document["environment_id"])
    with committing_sessions() as session:
        rows = session.exec(select(Connection).where(Connection.environment_id == env_id)).all()
        users = {u.id: u for u in session.exec(select(User).where(
            User.environment_id == env_id)).all()}
        apps = session.exec(select(App.id).where(col(App.first_party).is_(False))).all()
        links = session.exec(select(ConnectionCompany.connection_id, Company.debtor_id).join(
            Company, col(Company.id) == ConnectionCompany.company_id)).all()
        covered: dict[uuid.UUID, list[uuid.UUID]] = {}
        for connection_id, company_id in session.exec(select(
                ConnectionCompany.connection_id, ConnectionCompany.company_id)).all():
            covered.setdefault(connection_id, []).append(company_id)
        accountant = session.get(User, uuid.UUID(document["accountant_id"]))
        assert session.exec(select(func.count()).select_from(App).where(
            App.client_id == document["first_party_client_id"],
            col(App.first_party), App.environment_id == env_id)).one() == 1
    assert len(rows) == 3000 and accountant.template == "accountant"
    assert len({(c.user_id, c.app_id) for c in rows}) == 3000
    # Id order is creation order (to the millisecond, as UUIDv7 has it).
    millis = [int(c.created_at.timestamp() * 1000) for c in sorted(rows, key=lambda c: c.id)]
    assert millis == sorted(millis)
    by_id = {c.id: c for c in rows}
    # Each row carries its companies, sorted, as its links name them.
    assert all(c.company_ids == sorted(covered.get(c.id, [])) for c in rows)
    assert all(c.company_ids for c in rows)
    assert all(by_id[cid].debtor_id == debtor for cid, debtor in links)
    assert all(c.debtor_id == users[c.user_id].debtor_id for c in rows)
    statuses = Counter(c.status for c in rows)
    assert statuses["active"] > statuses["revoked"] > 0
    assert all(c.status in ("revoked", "suspended") for c in rows if not users[c.user_id].active)
    # The consent lifecycle's columns: some connections expire (the past ones expired),
    # used ones know when they needed some of their scopes.
    expiring = [c for c in rows if c.expires_at is not None]
    assert 0 < len(expiring) < len(rows) and statuses["expired"] > 0
    assert all(c.expires_at is not None and c.expires_at <= utcnow()
               for c in rows if c.status == "expired")
    assert any(c.scope_used_at for c in rows)
    assert all(set(c.scope_used_at) <= set(c.scopes) for c in rows)
    assert all(not c.scope_used_at for c in rows if c.last_used_at is None)
    popularity = Counter(c.app_id for c in rows).most_common()
    assert len(apps) >= 5 and popularity[0][1] > 2 * popularity[-1][1]

    again = invoke("bench", "seed-connections", "--environment", "Bench", "--count", "1")
    assert again.exit_code == 2 and "exists" in again.stderr
