"""Optimistic concurrency on the directory (shared/etag.py): environments, debtors,
companies and users carry an ETag and honour an optional `If-Match` (412 when the record
changed meanwhile)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from shared.models import Company, Debtor, Environment, User
from tests.fixtures.preconditions import walk
from tests.services.registry.conftest import World
from tests.services.registry.test_directory import provisioner

PATHS = {Environment: "environments", Debtor: "debtors", Company: "companies", User: "users"}


@pytest.mark.parametrize("model", [Environment, Debtor, Company, User],
                         ids=lambda m: m.__name__)
async def test_directory_records_carry_an_etag_and_honour_if_match(
    model, client: httpx.AsyncClient, world: World,
) -> None:
    row = {Environment: world.a.environment, Debtor: world.a.debtors[0],
           Company: world.a.companies[0], User: world.a.users["accountant"]}[model]
    url = f"/v1/directory/{PATHS[model]}/{row.id}"

    async def send(headers: dict[str, str], name: str) -> httpx.Response:
        return await client.patch(url, json={"name": name}, headers=headers)

    def stored() -> str:
        with world.sessions() as session:
            return session.get(model, row.id).name

    await walk(client, url, provisioner(world), send, stored,
               ["Renamed once", "Renamed twice", "Renamed thrice"])


async def test_creates_answer_the_etag_their_get_gives(client: httpx.AsyncClient,
                                                       world: World) -> None:
    headers = provisioner(world)
    environment = world.a.environment.id
    debtor = await client.post(f"/v1/directory/environments/{environment}/debtors",
                               json={"name": "Bakker", "number": "D-etag"}, headers=headers)
    assert debtor.status_code == 201, debtor.text
    company = await client.post(f"/v1/directory/debtors/{debtor.json()['id']}/companies",
                                json={"name": "Bakker BV", "number": "C-etag"}, headers=headers)
    user = await client.post(f"/v1/directory/environments/{environment}/users", headers=headers,
                             json={"email": "etag@bakker.example", "name": "E",
                                   "template": "master_client",
                                   "debtor_id": debtor.json()["id"]})
    for created, kind in ((debtor, "debtors"), (company, "companies"), (user, "users")):
        assert created.status_code == 201, created.text
        got = await client.get(f"/v1/directory/{kind}/{created.json()['id']}", headers=headers)
        assert got.headers["etag"] == created.headers["etag"], kind


async def test_two_writes_with_one_etag_at_once_one_wins(client: httpx.AsyncClient,
                                                         world: World) -> None:
    """The check and the write see the same row (locked for the write): of two changes
    sent at once with the same `If-Match`, one is done and the other answers 412."""
    headers = provisioner(world)
    url = f"/v1/directory/debtors/{world.a.debtors[0].id}"
    etag = (await client.get(url, headers=headers)).headers["etag"]
    answers = await asyncio.gather(*(
        client.patch(url, json={"name": name}, headers={**headers, "If-Match": etag})
        for name in ("First writer", "Second writer")))
    assert sorted(a.status_code for a in answers) == [200, 412], [a.text for a in answers]
    [winner] = [a for a in answers if a.status_code == 200]
    with world.sessions() as session:
        assert session.get(Debtor, world.a.debtors[0].id).name == winner.json()["name"]
