"""`koppel app suspend|resume CLIENT_ID` (SPEC 3 and 8)."""

from __future__ import annotations

import json

import redis
from sqlmodel import select

from shared.models import App, Connection, Event
from shared.status import Subject, status_key
from tests.cli.conftest import Invoke, cli_env, invoke  # noqa: F401 - fixtures
from tests.services.registry.conftest import World


def test_suspend_and_resume_an_app_everywhere(world: World, invoke: Invoke,  # noqa: F811
                                              redis_client: redis.Redis) -> None:
    app = world.apps[0]
    mine = [c for c in world.a.connections + world.b.connections if c.app_id == app.id]
    result = invoke("app", "suspend", app.client_id, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["connections"] == {"suspended": len(mine), "resumed": 0,
                                                         "expired": 0}
    assert redis_client.get(status_key(Subject.APP, app.client_id)) == b"0"
    for connection in mine:
        assert redis_client.get(status_key(Subject.CONNECTION, connection.id)) == b"0"
    with world.sessions() as session:
        assert session.exec(select(App).where(App.id == app.id)).one().status == "suspended"
        statuses = {c.id: c.status for c in session.exec(select(Connection)).all()}
        assert all(statuses[c.id] == "suspended" for c in mine)
        assert sum(s == "active" for s in statuses.values()) == len(statuses) - len(mine)

    resumed = invoke("app", "resume", app.client_id)
    assert resumed.exit_code == 0, resumed.output
    assert redis_client.get(status_key(Subject.APP, app.client_id)) == b"1"
    with world.sessions() as session:
        assert all(c.status == "active" for c in session.exec(select(Connection)).all())
        types = sorted(e.type for e in session.exec(select(Event)).all())
        assert types == ["connection.resumed"] * len(mine) + ["connection.suspended"] * len(mine)
    assert invoke("app", "suspend", "nope").exit_code == 2
    assert invoke("app", "suspend", world.first_party.client_id).exit_code == 2
