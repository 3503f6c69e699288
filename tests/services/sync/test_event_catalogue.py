"""The event catalogue (shared/events.py): one source for `GET /v1/event-types`, the
`webhooks` section of sync's OpenAPI document, subscription checks and what `emit`
accepts; real deliveries match it (the `receiver` fixture validates every body it gets
against the published schema)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, select

from shared.events import CATALOGUE, TEST_EVENT
from shared.models import WebhookDelivery
from shared.outbox import emit
from shared.runtime import Runtime
from shared.scopes import SCOPES, event_scopes
from tests.fixtures import factories as f
from tests.services.sync.conftest import Receiver, Tokens, wait_for, worker_running

RFC3339_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


async def test_event_types_are_public_and_list_the_whole_catalogue(
    sync_client: httpx.AsyncClient,
) -> None:
    response = await sync_client.get("/v1/event-types")
    assert response.status_code == 200, response.text
    listed = {item["name"]: item for item in response.json()["data"]}
    assert set(listed) == set(CATALOGUE)
    # Every event a scope unlocks is catalogued, and needs exactly the scopes that unlock it.
    assert {e for scope in SCOPES.values() for e in scope.events} <= set(listed)
    for name, item in listed.items():
        assert item["scopes"] == sorted(event_scopes(name))
        assert item["schema"] == CATALOGUE[name].schema()
        assert item["schema"]["properties"]["type"]["const"] == name
        assert item["subscribable"] is (name != TEST_EVENT)
        assert item["description"]
    assert listed["employee.absence.changed"]["scopes"] == ["employee.absence.read"]
    assert listed["connection.revoked"]["scopes"] == []


async def test_openapi_webhooks_section_is_the_catalogue(sync_client: httpx.AsyncClient) -> None:
    document = (await sync_client.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    assert set(document["webhooks"]) == set(CATALOGUE)
    schemas = document["components"]["schemas"]
    for name, item in document["webhooks"].items():
        ref = item["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        body = schemas[ref.rsplit("/", 1)[1]]
        assert body["properties"]["type"]["const"] == name
        data_ref = body["properties"]["data"]["$ref"].rsplit("/", 1)[1]
        assert set(schemas[data_ref]["properties"]) == set(
            CATALOGUE[name].data.model_json_schema()["properties"])


@pytest.mark.parametrize("events", [["employee.hired"], [TEST_EVENT]])
async def test_subscribing_outside_the_catalogue_is_refused(
    sync_client: httpx.AsyncClient, tokens: Tokens, world, receiver: Receiver,
    events: list[str],
) -> None:
    response = await sync_client.post(
        "/v1/webhooks", json={"url": receiver.url("/ok"), "events": events},
        headers=tokens.app(world.apps["info"]))
    assert response.status_code == 422, response.text


def test_emit_refuses_what_the_catalogue_does_not_say(
    committing_sessions: sessionmaker[Session],
) -> None:
    ids: dict[str, Any] = {"debtor_id": uuid.uuid4(), "company_id": uuid.uuid4()}
    with committing_sessions() as session:
        with pytest.raises(KeyError):
            emit(session, "employee.hired", uuid.uuid4(), **ids)
        with pytest.raises(ValidationError):  # no employee_id, no changed_fields
            emit(session, "employee.updated", uuid.uuid4(), **ids)
        with pytest.raises(ValidationError):  # a field the schema does not have
            emit(session, "employee.updated", uuid.uuid4(), **ids, employee_id=uuid.uuid4(),
                 changed_fields=[], salary=5000)
        session.rollback()


async def test_real_deliveries_match_the_catalogue_with_one_timestamp_format(
    sync_client: httpx.AsyncClient, tokens: Tokens, receiver: Receiver, runtime: Runtime,
    settings, committing_sessions: sessionmaker[Session],
) -> None:
    """Writes through the API, and a test message, each delivered by the real worker to a
    real receiver: every body validates (the fixture checks it against the published
    schema) and every timestamp has the same format."""
    scopes = ["employee.info", "employee.payment", "employee.bankaccount",
              "employee.employment", "employee.leave"]
    with committing_sessions() as session, session.begin():
        env = f.make_environment(session)
        company = f.make_company(session, f.make_debtor(session, env))
        user = f.make_user(session, env, companies=[company])
        app = f.make_app(session, scopes=scopes)
        connection = f.make_connection(session, user, app, companies=[company], scopes=scopes)
        employee = f.make_employee(session, company)
    auth = tokens.connection(connection, app, " ".join(scopes))
    hook = await sync_client.post(
        "/v1/webhooks", json={"url": receiver.url("/ok"), "events": sorted(
            name for name in CATALOGUE if name != TEST_EVENT)},
        headers=tokens.app(app))
    assert hook.status_code == 201, hook.text
    base = f"/v1/employees/{employee.id}"
    writes = [
        ("PATCH", base, {"last_name": "Catalogue"}),
        ("POST", f"{base}/wage-components", {"code": "BASE", "description": "Base salary",
                                            "amount_cents": 420000,
                                            "valid_from": "2026-01-01"}),
        ("POST", f"{base}/leave-requests", {"leave_type": "statutory",
                                           "start_date": "2026-07-01",
                                           "end_date": "2026-07-02", "hours": 16}),
    ]
    for method, path, body in writes:
        response = await sync_client.request(method, path, json=body, headers=auth)
        assert response.status_code in (200, 201), (path, response.text)
    component = (await sync_client.get(f"{base}/wage-components", headers=auth)).json()
    component_id = component["data"][0]["id"]
    ended = await sync_client.post(f"{base}/wage-components/{component_id}/end",
                                   json={"valid_to": "2026-12-31"}, headers=auth)
    assert ended.status_code == 200, ended.text
    test = await sync_client.post(f"/v1/webhooks/{hook.json()['id']}/test",
                                  headers=tokens.app(app))
    assert test.status_code in (200, 201, 202), test.text

    async def all_sent() -> bool:
        async with runtime.async_session() as session:
            rows = (await session.exec(select(WebhookDelivery))).all()
        return len(receiver.to("/ok")) >= 5 and len(rows) >= 5

    async with worker_running(settings):
        await wait_for(all_sent)
    bodies = [httpx.Response(200, content=r.body).json() for r in receiver.to("/ok")]
    types = {body["type"] for body in bodies}
    assert {"employee.updated", "employee.payment.changed", "employee.leave.changed",
            TEST_EVENT} <= types, types
    for body in bodies:
        assert RFC3339_MS.match(body["timestamp"]), body["timestamp"]
