"""The overview's list is built from plain rows and written by orjson (overview/service.py
`page_items`, `page_json`). It must be the bytes the models gave: the ORM rows through
`overview_row` (which revoke, narrow and bulk revoke still answer with) as FastAPI writes
`OverviewList`. The world is awkward on purpose: never-used connections, last uses at
other offsets and naive, unknown and repeated scopes, every scope, expired, expiring,
suspended and revoked connections (with who and why), approvals, deactivated users,
suspended, blocked and webhook-disabled apps, no companies and several, unicode and
control characters; every sort, both languages, filters, and pages by cursor."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import httpx
import pytest
from pydantic import TypeAdapter

from services.registry.overview import service
from services.registry.overview.repository import OverviewRepository, _page_statement
from services.registry.overview.schemas import OverviewList, OverviewQuery
from shared.db.types import utcnow
from shared.models import (
    AppState,
    AppStatus,
    ConnectionStatus,
    EnvironmentAppPolicy,
    UserTemplate,
    WebhookEndpoint,
    WebhookEndpointStatus,
)
from shared.runtime import Runtime
from shared.scopes import SCOPES
from tests.fixtures import factories as f
from tests.services.registry.conftest import World
from tests.services.registry.support import accountant

PATH = "/v1/environment/connections"
ODD = ["ünïcödé ✓ 日本", 'Acme, "Quoted" B.V.', "bell\x07 tab\t nl\n", "=formula", "</script>"]
NAMES = ["ünï", 'q"uote', "plain"]
SORTS = ["created_at", "-created_at", "last_used_at", "-last_used_at", "expires_at",
         "-expires_at"]
WRITES = TypeAdapter(OverviewList)  # what FastAPI writes for the route's response_model


def _awkward_world(world: World, now: datetime) -> dict[str, str]:
    """About 40 connections of environment A, each with its own mix of awkward values;
    returns what the filters ask for (an app's client_id, a company id)."""
    tenant = world.a
    with world.sessions() as session:
        debtor = tenant.debtors[0]
        companies = [f.make_company(session, debtor) for _ in range(3)]
        apps = [f.make_app(session, name=name, publisher=None if i % 2 else ODD[-1 - i])
                for i, name in enumerate(ODD)]
        apps[1].status = AppStatus.SUSPENDED
        session.add(EnvironmentAppPolicy(environment_id=tenant.environment.id,
                                         app_id=apps[2].id, state=AppState.BLOCKED))
        session.add(WebhookEndpoint(app_id=apps[3].id, url="https://hooks.example/x",
                                    events=["*"], status=WebhookEndpointStatus.DISABLED,
                                    secret_ciphertext=b"sealed", secret_key_id="k1"))
        templates = [UserTemplate.COMPANY, UserTemplate.MASTER_CLIENT, UserTemplate.EMPLOYEE]
        users = [f.make_user(session, tenant.environment, debtor=debtor,
                             email=f"{NAMES[i % 3]}{i}@x.test",
                             template=templates[i % 3], active=i % 4 != 3,
                             companies=companies[:1])
                 for i in range(8)]  # with the 5 apps: 40 pairs, one connection each
        scope_lists = [[], ["company.info.read"], sorted(SCOPES),
                       ["unknown.x", "employee.info.read", "employee.info.read"],
                       ["company.info.read", "employee.info", "employee.payment.read",
                        "offline_access"]]
        for i in range(40):
            scopes = scope_lists[i % len(scope_lists)]
            old = i % 3 != 0  # made 200 days ago (its scopes can be unused), or 5 days
            created = now - timedelta(days=200 if old else 5, seconds=i,
                                      microseconds=0 if i % 2 else 123456)
            used = [None, now - timedelta(days=100), now - timedelta(hours=1, microseconds=i),
                    created + timedelta(seconds=1)][i % 4]
            # Last uses as the worker writes them (UTC), and at other offsets; a naive
            # time only where it is not compared (a recent connection).
            stamps = [(now - timedelta(days=1)).isoformat(),
                      (now - timedelta(days=120)).isoformat().replace("+00:00", "Z"),
                      (now - timedelta(days=2)).astimezone().isoformat(),
                      "2026-01-02T03:04:05.000001+02:00", "2026-01-02T03:04:05+00:00:30"]
            seen = {} if used is None else {
                scope: stamps[(i + j) % len(stamps)]
                for j, scope in enumerate(scopes) if (i + j) % 3}
            if not old and scopes:
                seen[scopes[0]] = "2026-01-02T03:04:05"
            seen["not.granted"] = stamps[0]
            status = [ConnectionStatus.ACTIVE, ConnectionStatus.SUSPENDED,
                      ConnectionStatus.EXPIRED, ConnectionStatus.REVOKED][i % 7 % 4]
            revoked = status == ConnectionStatus.REVOKED
            f.make_connection(
                session, users[i % len(users)], apps[i % len(apps)],
                companies=companies[:i % 4], scopes=scopes, scope_used_at=seen,
                created_at=created, last_used_at=used, status=status,
                expires_at=[None, now + timedelta(days=3), now + timedelta(days=60),
                            now - timedelta(days=2)][i % 4],
                revoked_at=created + timedelta(days=1) if revoked else None,
                revoked_by=f"user:{users[0].id}" if revoked else None,
                revoke_reason=ODD[i % len(ODD)] if revoked and i % 2 else None,
                approved_by=f"user:{users[1].id}" if i % 5 == 2 else None)
        session.commit()
        return {"app": apps[1].client_id, "company": str(companies[1].id)}


async def _models_answer(runtime: Runtime, world: World, query: OverviewQuery, lang: str,
                         now: datetime) -> bytes:
    """The page as the models made it: ORM rows, `overview_row`, FastAPI's writing."""
    key, notice_days = runtime.keyring.digest_key, world.settings.consent_expiry_notice_days
    async with runtime.async_session() as session:
        rows = await OverviewRepository(session).page(
            world.a.environment.id, query, query.sort, service._position(query, key),
            query.limit + 1, now)
        more = len(rows) > query.limit
        rows = rows[:query.limit]
        cursor = service._cursor(query, key, rows[-1][0]) if more else None
        data = await service.rows_with_companies(session, rows, lang, now, notice_days)
    return WRITES.dump_json(OverviewList(data=data, next_cursor=cursor), by_alias=True)


async def _every_page(client: httpx.AsyncClient, runtime: Runtime, world: World,
                      params: dict, lang: str, now: datetime) -> list[dict]:
    """Walk the list page by page, each answer compared with the models' bytes."""
    seen, cursor = [], None
    headers = {**accountant(world), "Accept-Language": lang}
    while True:
        ask = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get(PATH, params=ask, headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        expected = await _models_answer(runtime, world, OverviewQuery(**ask), lang, now)
        assert response.content == expected, ask
        body = response.json()
        seen += body["data"]
        cursor = body["next_cursor"]
        assert ("link" in response.headers) == (cursor is not None)
        if cursor is None:
            return seen


@pytest.fixture
def fixed_now(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """One `now` for the route and the models (flags and unused scopes depend on it)."""
    now = utcnow()
    monkeypatch.setattr(service, "utcnow", lambda: now)
    return now


@pytest.mark.parametrize("sort", SORTS)
async def test_every_page_is_the_models_answer(client: httpx.AsyncClient, world: World,
                                               runtime: Runtime, fixed_now: datetime,
                                               sort: str) -> None:
    _awkward_world(world, fixed_now)
    rows = await _every_page(client, runtime, world, {"sort": sort, "limit": 7},
                             "nl" if sort.startswith("-") else "en", fixed_now)
    assert len(rows) == len(world.a.connections) + 40
    # The world holds what it should: the awkward cases are in the answer.
    flags = {flag for row in rows for flag in row["flags"]}
    assert flags >= {"expiring_soon", "unused_90_days", "unused_scopes", "user_deactivated",
                     "app_suspended", "app_blocked", "webhooks_disabled"}
    times = {use["last_used_at"] for row in rows for use in row["scope_usage"]}
    assert None in times and "2026-01-02T03:04:05" in times
    # An offset of whole seconds, as pydantic writes it (without the seconds).
    assert "2026-01-02T03:04:05.000001+02:00" in times and "2026-01-02T03:04:05+00:00" in times
    assert any(row["revoke_reason"] for row in rows) and any(row["approved_by"] for row in rows)
    assert any(len(row["company_ids"]) == 3 for row in rows)
    assert any(row["last_used_at"] is None for row in rows)


@pytest.mark.parametrize("filters", [
    {"status": "revoked"}, {"status": "expired"}, {"user_deactivated": "true"},
    {"stale": "true"}, {"stale": "false"}, {"scope": "employee.info.read"}, {"app": None},
    {"company": None}, {"expires_before": "2100-01-01T00:00:00Z"},
    {"app": None, "status": "active", "created_before": "2100-01-01T00:00:00Z",
     "user_deactivated": "false", "scope": "company.info.read"},
])
async def test_filtered_pages_are_the_models_answer(client: httpx.AsyncClient, world: World,
                                                    runtime: Runtime, fixed_now: datetime,
                                                    filters: dict) -> None:
    found = _awkward_world(world, fixed_now)
    params = {k: v if v is not None else found[k] for k, v in filters.items()}
    for sort in ("created_at", "-last_used_at"):
        rows = await _every_page(client, runtime, world, {**params, "sort": sort,
                                                          "limit": 4}, "en", fixed_now)
        assert rows


async def test_id_order_pages_reuse_their_statement(client: httpx.AsyncClient,
                                                     world: World, runtime: Runtime,
                                                     fixed_now: datetime) -> None:
    """Pages in id order run one statement per shape of query, built once, its values
    as parameters (repository.py `_page_statement`): still each query's own answer."""
    found = _awkward_world(world, fixed_now)
    before = _page_statement.cache_info()
    for params in ({"app": found["app"]}, {"status": "revoked"}, {"status": "active"}):
        await _every_page(client, runtime, world, {**params, "limit": 3}, "en", fixed_now)
    after = _page_statement.cache_info()
    assert after.hits - before.hits >= 4


async def test_an_empty_page_and_a_single_row(client: httpx.AsyncClient, world: World,
                                              runtime: Runtime, fixed_now: datetime) -> None:
    await _every_page(client, runtime, world, {"user": str(uuid.uuid4())}, "en", fixed_now)
    await _every_page(client, runtime, world, {"limit": 1}, "en", fixed_now)


def test_json_text_is_read_as_the_driver_reads_it() -> None:
    """orjson reads the JSON columns; what it refuses, json.loads reads as before."""
    assert service._json('["a", "b"]') == ["a", "b"] and service._json(None) is None
    assert service._json('{"a": NaN, "b": 1e999}') == {"a": pytest.approx(float("nan"),
                                                                          nan_ok=True),
                                                       "b": float("inf")}
