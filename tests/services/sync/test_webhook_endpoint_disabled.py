"""`endpoint.disabled`: when Koppel disables an endpoint (410 Gone, or deliveries failed
for a day), the app's other active endpoints that subscribe to it receive a message
saying which, why and when; not the app's other endpoints, not other apps, and not when
the app disables an endpoint itself."""

from __future__ import annotations

import json
import re

import httpx
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from shared.config import Settings
from shared.jobs import nudge
from shared.runtime import Runtime
from tests.services.sync.conftest import Receiver, Tokens, wait_for, worker_running
from tests.services.sync.test_webhook_delivery import emitted, settled, subscribe
from tests.services.sync.worlds import World

RFC3339_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


async def test_an_endpoint_koppel_disables_is_announced_to_the_apps_other_endpoints(
    sync_client: httpx.AsyncClient, tokens: Tokens, world: World, receiver: Receiver,
    runtime: Runtime, settings: Settings, committing_sessions: sessionmaker[Session],
    fast_retries: None,
) -> None:
    app, other_app = world.apps["info"], world.apps["both"]
    gone = await subscribe(sync_client, tokens, app, receiver.url("/gone"), ["employee.updated"])
    failing = await subscribe(sync_client, tokens, app, receiver.url("/fail"),
                              ["employee.updated"])
    await subscribe(sync_client, tokens, app, receiver.url("/ok/listener"),
                    ["endpoint.disabled"])
    mine = await subscribe(sync_client, tokens, app, receiver.url("/ok/mine"),
                           ["employee.updated", "endpoint.disabled"])
    await subscribe(sync_client, tokens, app, receiver.url("/ok/deaf"), ["employee.updated"])
    await subscribe(sync_client, tokens, other_app, receiver.url("/ok/other-app"),
                    ["endpoint.disabled"])
    # Two events: both answered 410 in one batch still disable (and announce) once.
    await emitted(committing_sessions, world, "employee.updated")
    await emitted(committing_sessions, world, "employee.updated")
    await nudge(runtime.redis)
    async with worker_running(settings):
        # 2 x 4 deliveries of the events, then 2 announcements to each of 2 listeners.
        await wait_for(settled(runtime, 12))
        assert len(receiver.to("/ok/listener")) == 2
        # Disabled by the app itself: no announcement.
        off = await sync_client.post(f"/v1/webhooks/{mine['id']}/disable",
                                     headers=tokens.app(app))
        assert off.status_code == 200
        await emitted(committing_sessions, world, "employee.updated")
        await nudge(runtime.redis)
        await wait_for(lambda: len(receiver.to("/ok/deaf")) == 3)
        await wait_for(settled(runtime, 13))
    announced = [json.loads(r.body) for r in receiver.to("/ok/listener")]
    assert [m["type"] for m in announced] == ["endpoint.disabled"] * 2
    about = {m["data"]["endpoint_id"]: m["data"] for m in announced}
    assert set(about) == {gone["id"], failing["id"]}
    assert about[gone["id"]]["url"] == receiver.url("/gone")
    assert "410" in about[gone["id"]]["reason"]
    assert "failed for a day" in about[failing["id"]]["reason"]
    for data in about.values():
        assert RFC3339_MS.match(data["disabled_at"])
    shown = (await sync_client.get(f"/v1/webhooks/{gone['id']}",
                                   headers=tokens.app(app))).json()
    assert shown["status"] == "disabled"
    assert shown["disabled_reason"] == about[gone["id"]]["reason"]
    # The endpoint that subscribes to both got the same two, before the app disabled it;
    # the one that does not subscribe and the other app's got none.
    assert sorted(json.loads(r.body)["type"] for r in receiver.to("/ok/mine")) == [
        "employee.updated", "employee.updated", "endpoint.disabled", "endpoint.disabled"]
    assert [json.loads(r.body)["type"] for r in receiver.to("/ok/deaf")] == [
        "employee.updated"] * 3
    assert receiver.to("/ok/other-app") == []
