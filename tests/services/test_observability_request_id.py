"""The request id travels: an API write stores it on its outbox event, its nudge
carries it, and the worker logs the webhook delivery that change caused under it (the
real arq worker, in this process and as `koppel worker`; a real receiver). Receivers
never see it."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, select

from services.sync.app import create_app
from shared.config import Settings
from shared.jobs import EVENTS_RELAY, NUDGES, WEBHOOKS_DELIVER
from shared.models import Event
from shared.outbox import emit
from shared.runtime import Runtime
from tests.services.conftest import running
from tests.services.sync.conftest import (  # noqa: F401 - fixtures
    Receiver,
    Tokens,
    fast_retries,
    receiver,
    tokens,
    wait_for,
    worker_running,
)
from tests.services.sync.test_delivery_recovery import koppel_worker
from tests.services.sync.test_webhook_delivery import settled, subscribe
from tests.services.sync.worlds import World, world  # noqa: F401 - fixture


@pytest.fixture
def json_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"log_json": True, "log_level": "info"})


def events(sessions: sessionmaker[Session]) -> list[Event]:
    with sessions() as session:
        return list(session.exec(select(Event).order_by(Event.id)).all())


async def create_employee(client: httpx.AsyncClient, signer: Tokens, where: World,
                          headers: dict[str, str]) -> httpx.Response:
    auth = signer.connection(where.connections["both"], where.apps["both"])
    response = await client.post(
        f"/v1/companies/{where.companies[0].id}/employees",
        json={"number": f"N-{uuid.uuid4().hex[:8]}", "first_name": "Bea", "last_name": "Wit"},
        headers={**auth, **headers})
    assert response.status_code == 201, response.text
    return response


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.usefixtures("fast_retries")
async def test_the_delivery_a_write_caused_is_logged_under_its_request_id(
    json_settings: Settings, tokens: Tokens, world: World, receiver: Receiver,  # noqa: F811
    runtime: Runtime, committing_sessions: sessionmaker[Session],
    capsys: pytest.CaptureFixture,
) -> None:
    request_id = f"obs-{uuid.uuid4().hex}"
    async with running(create_app(json_settings)) as client:
        # /flaky answers 500 once, then 200: a failed attempt and its retry.
        await subscribe(client, tokens, world.apps["both"], receiver.url("/flaky"),
                        ["employee.created"])
        created = await create_employee(client, tokens, world, {"X-Request-Id": request_id})
    assert created.headers["x-request-id"] == request_id

    [event] = events(committing_sessions)
    assert event.request_id == request_id
    assert request_id not in json.dumps(event.data)  # on the row, not in the payload
    nudges = await runtime.redis.lrange(NUDGES, 0, -1)
    # This request pushed exactly one nudge, carrying its id (an earlier test's command
    # may have left a nudge of its own on the shared list: it is dropped below as well).
    assert [n for n in nudges if n == request_id.encode()] == [request_id.encode()]
    # Lose the nudges: the sweeper's nudge (no request id) relays and delivers, and the
    # id still comes along, read back from the event row.
    await runtime.redis.delete(NUDGES)

    capsys.readouterr()
    # Debug: a success is logged at debug level (a failure at info).
    async with worker_running(json_settings.model_copy(update={"log_level": "debug"})):
        await wait_for(lambda: len(receiver.to("/flaky")) >= 2)
        await wait_for(settled(runtime, 1))
    lines = json_lines(capsys.readouterr().err)

    worker_jobs = {EVENTS_RELAY, WEBHOOKS_DELIVER}
    [failed] = [line for line in lines if line.get("event") == "webhook delivery attempt failed"]
    [delivered] = [line for line in lines if line.get("event") == "webhook delivered"]
    for line in (failed, delivered):
        assert line["request_id"] == request_id, line
        assert line["service"] == "worker" and line["job"] in worker_jobs
        assert line["delivery_id"] == failed["delivery_id"]
    assert (failed["attempt"], failed["status_code"]) == (1, 500)
    assert (delivered["attempt"], delivered["status_code"]) == (2, 200)
    # Every line logged under the id is the worker's, in a job that change caused.
    mine = [line for line in lines if line.get("request_id") == request_id]
    assert {line.get("job") for line in mine} <= worker_jobs
    # A job the request did not cause (the sweeper's) carries no request id.
    assert not any(line.get("request_id") for line in lines
                   if line.get("job") not in worker_jobs)

    for sent in receiver.to("/flaky"):
        assert request_id not in sent.body.decode()
        assert request_id not in json.dumps(sent.headers), "internal ids never reach partners"


async def test_a_malformed_request_id_is_replaced_on_the_event_too(
    settings: Settings, tokens: Tokens, world: World,  # noqa: F811
    committing_sessions: sessionmaker[Session],
) -> None:
    async with running(create_app(settings)) as client:
        forged = await create_employee(client, tokens, world,
                                       {"X-Request-Id": "x\tforged=1 " + "a" * 200})
        unnamed = await create_employee(client, tokens, world, {})
    made = [forged.headers["x-request-id"], unnamed.headers["x-request-id"]]
    assert all(len(value) == 32 for value in made) and made[0] != made[1]
    assert [event.request_id for event in events(committing_sessions)] == made

    # A change made outside any request (a script, a job without one) stores none.
    with committing_sessions() as session, session.begin():
        emit(session, "employee.updated", world.env.id, debtor_id=world.companies[0].debtor_id,
             company_id=world.companies[0].id, employee_id=world.companies[0].id,
             changed_fields=["last_name"])
    assert events(committing_sessions)[-1].request_id is None


async def test_koppel_worker_logs_the_delivery_under_the_request_id(
    settings: Settings, tokens: Tokens, world: World, receiver: Receiver,  # noqa: F811
    runtime: Runtime, subprocess_env: dict[str, str],
    committing_sessions: sessionmaker[Session], tmp_path: Path,
) -> None:
    request_id = f"proc-{uuid.uuid4().hex}"
    async with running(create_app(settings)) as client:
        await subscribe(client, tokens, world.apps["both"], receiver.url("/ok"),
                        ["employee.created"])
        await create_employee(client, tokens, world, {"X-Request-Id": request_id})
    log = tmp_path / "worker.log"
    env = {**subprocess_env, "KOPPEL_LOG_JSON": "true", "KOPPEL_LOG_LEVEL": "debug"}
    with koppel_worker(env, log):
        await wait_for(lambda: receiver.to("/ok"), timeout=60)
        await wait_for(settled(runtime, 1))
        text = await wait_for(lambda: (t := log.read_text(errors="replace"))
                              and "webhook delivered" in t and t)
    [delivered] = [line for line in json_lines(text) if line.get("event") == "webhook delivered"]
    assert delivered["request_id"] == request_id and delivered["service"] == "worker"
    assert request_id not in json.dumps(receiver.to("/ok")[0].headers)
