"""RFC 7591 registration with hostile JSON (issue 14, finding 4; SECURITY 38): deep
nesting and lone surrogates are a 4xx problem document, and nothing is registered."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlmodel import select

from shared.models import App
from tests.services.registry.conftest import World, bearer
from tests.services.registry.test_registration import GOOD


def _apps(world: World) -> int:
    with world.sessions() as session:
        return len(session.exec(select(App)).all())


def _with(field: str, raw_value: str) -> bytes:
    """GOOD with `field` replaced by raw JSON text (escapes stay escapes)."""
    members = [f'"{k}": {raw_value}' if k == field else f'"{k}": {json.dumps(v)}'
               for k, v in GOOD.items()]
    return ("{" + ", ".join(members) + "}").encode()


HOSTILE = {
    "5000 deep": _with("client_name", '{"a": ' * 5000 + '"x"' + "}" * 5000),
    "5000 deep list": _with("contacts", "[" * 5000 + "]" * 5000),
    "lone high surrogate in client_name": _with("client_name", '"Planner \\ud800"'),
    "lone low surrogate in client_name": _with("client_name", '"\\udc00 Planner"'),
    "lone surrogate in contacts": _with("contacts", '["dev\\ud83d@planner.example"]'),
    "surrogate as raw bytes": _with("client_name", '"x"').replace(b'"x"', b'"\xed\xa0\x80"'),
}


@pytest.mark.parametrize("what", sorted(HOSTILE))
async def test_line38_hostile_json_is_refused_and_registers_nothing(
    client: httpx.AsyncClient, world: World, initial_token: str, what: str,
) -> None:
    before = _apps(world)
    for content_type in ("application/json", "text/plain"):
        response = await client.post("/oauth2/register", content=HOSTILE[what],
                                     headers={**bearer(initial_token),
                                              "Content-Type": content_type})
        assert 400 <= response.status_code < 500, (content_type, response.text[:300])
        kind = response.headers["content-type"]
        assert kind.startswith(("application/problem+json", "application/json")), kind
    assert _apps(world) == before


async def test_a_surrogate_pair_is_a_character_and_registers(
    client: httpx.AsyncClient, initial_token: str,
) -> None:
    """A proper pair (an emoji) is not a lone surrogate."""
    response = await client.post("/oauth2/register", headers={**bearer(initial_token),
                                                              "Content-Type": "application/json"},
                                 content=_with("client_name", '"Planner \\ud83d\\ude80"'))
    assert response.status_code == 201, response.text
    assert response.json()["client_name"] == "Planner \U0001f680"
