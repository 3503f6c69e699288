"""On PostgreSQL the database writes the CSV export's lines (repository.py `export_text`);
they must be the bytes the Python formatter (csv_export.py, the SQLite path) writes from
the same rows: quotes, commas, line breaks, formula-leading text, unicode, NULLs, revoked
rows, several companies, unknown scopes, in every sort, with filters and batch edges.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import text

from services.registry.overview import service
from services.registry.overview.csv_export import csv_stream
from services.registry.overview.schemas import OverviewQuery
from shared.config import Settings
from shared.db.engine import async_session_factory, create_async_db_engine
from shared.db.types import utcnow
from shared.models import (
    App,
    AppStatus,
    Connection,
    ConnectionStatus,
    EnvironmentAppPolicy,
    User,
    WebhookEndpoint,
    WebhookEndpointStatus,
)
from tests.fixtures import factories as f
from tests.services.registry.conftest import World

pytestmark = pytest.mark.postgres_only
NOTICE_DAYS = 14  # KOPPEL_CONSENT_EXPIRY_NOTICE_DAYS: the flags' `expiring_soon` window

TRICKY = ['Acme, "Quoted" B.V.', "=HYPERLINK(\"x\")", "+31 payroll", "-minus", "@at",
          "\ttab", "\rcarriage", "multi\nline", "crlf\r\nend", "ünïcödé ✓ 日本", '"', ",", ""]


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator:
    engine = create_async_db_engine(settings.resolved_database_url)
    try:
        yield async_session_factory(engine), engine
    finally:
        await engine.dispose()


def _tricky_world(world: World) -> None:
    """Apps, users and connections of environment A with every kind of awkward cell."""
    tenant, now = world.a, utcnow()
    with world.sessions() as session:
        debtor = tenant.debtors[0]
        companies = [f.make_company(session, debtor) for _ in range(4)]
        apps = [f.make_app(session, name=name, publisher=TRICKY[-1 - i] or None,
                           client_id=f"{i}{name}"[:60] if i % 3 else f"c-{i}")
                for i, name in enumerate(TRICKY)]
        emails = ["=cmd@x.test", '"q,uote"@x.test', "ünï@x.test", "line\nbreak@x.test",
                  "-dash@x.test", "plain@x.test"]
        users = [f.make_user(session, tenant.environment, debtor=debtor, email=email,
                             active=i % 2 == 0, companies=companies[:1])
                 for i, email in enumerate(emails)]
        scope_lists = [[], ["company.info.read"], ["employee.bankaccount.read", "unknown.x"],
                       ["=evil", "a,b", 'q"uote', "ünï"], ["employee.info", "offline_access"],
                       ["multi\nline"]]
        for i, app in enumerate(apps):
            for j, user in enumerate(users):
                if (i + j) % 3:
                    continue
                created = now - timedelta(days=(i * 31 + j) % 400,
                                          microseconds=0 if j % 2 else 123456)
                used = None if (i + j) % 4 == 0 else created + timedelta(seconds=j, microseconds=i)
                revoked = (i + j) % 5 == 0
                expired = (i + j) % 7 == 1
                # Expiries near, far, past and none: the `flags` column's expiring_soon.
                expires = [None, now + timedelta(days=3), now + timedelta(days=40),
                           now - timedelta(days=2)][(i + j) % 4]
                f.make_connection(
                    session, user, app, companies=companies[:(i + j) % 5],
                    scopes=scope_lists[(i + 2 * j) % len(scope_lists)], created_at=created,
                    last_used_at=used, expires_at=expires,
                    status=ConnectionStatus.REVOKED if revoked else
                    ConnectionStatus.EXPIRED if expired else ConnectionStatus.ACTIVE,
                    revoked_at=used or created if revoked else None)
        # App-wide flags: suspended, blocked in this environment, a webhook endpoint off.
        apps[1].status = AppStatus.SUSPENDED
        session.add(EnvironmentAppPolicy(environment_id=tenant.environment.id,
                                         app_id=apps[2].id, state="blocked"))
        for app, status in ((apps[3], WebhookEndpointStatus.DISABLED),
                            (apps[4], WebhookEndpointStatus.ACTIVE)):
            session.add(WebhookEndpoint(app_id=app.id, url="https://hooks.example/x",
                                        events=["*"], status=status,
                                        secret_ciphertext=b"sealed", secret_key_id="k1"))
        session.commit()


async def _both(factory, world: World, query: OverviewQuery, batch: int | None
                ) -> tuple[str, str]:
    environment_id = world.a.environment.id
    fast = "".join([c async for c in csv_stream(service.export_batches(
        factory, environment_id, query, batch, notice_days=NOTICE_DAYS))])
    python = "".join([c async for c in csv_stream(service.row_batches(
        factory, environment_id, query, batch, notice_days=NOTICE_DAYS))])
    return fast, python


@pytest.mark.parametrize("sort", ["created_at", "-created_at", "last_used_at", "-last_used_at"])
@pytest.mark.parametrize("batch", [None, 1, 7])
async def test_database_lines_equal_the_python_formatter(
    world: World, sessions, sort: str, batch: int | None
) -> None:
    _tricky_world(world)
    factory, _ = sessions
    fast, python = await _both(factory, world, OverviewQuery(sort=sort), batch)
    assert fast == python
    assert fast.count("\r\n") > 30 and "'=HYPERLINK" in fast and "ünï" in fast
    for flag in ("expiring_soon", "unused_90_days", "user_deactivated", "app_suspended",
                 "app_blocked", "webhooks_disabled"):
        assert flag in fast, flag
    assert '"line\nbreak@x.test"' in fast and '"Acme, ""Quoted"" B.V."' in fast


@pytest.mark.parametrize("filters", [
    {"status": "revoked"}, {"user_deactivated": True}, {"stale": False},
    {"scope": "employee.bankaccount.read"}, {"status": "suspended"},
])
async def test_database_lines_equal_with_filters(world: World, sessions, filters: dict) -> None:
    _tricky_world(world)
    factory, _ = sessions
    for sort in ("created_at", "-last_used_at"):
        fast, python = await _both(factory, world, OverviewQuery(sort=sort, **filters), 3)
        assert fast == python


async def test_filters_by_app_and_company_and_other_environments(world: World, sessions
                                                                 ) -> None:
    _tricky_world(world)
    factory, _ = sessions
    with world.sessions() as session:
        connection = session.get(Connection, world.a.connections[0].id)
        app = session.get(App, connection.app_id)
    for filters in ({"app": app.client_id}, {"company": str(world.a.companies[0].id)},
                    {"user": str(connection.user_id)}):
        fast, python = await _both(factory, world, OverviewQuery(**filters), 2)
        assert fast == python and fast.count("\r\n") > 1
    fast, _ = await _both(factory, world, OverviewQuery(), None)
    assert not any(str(c.id) in fast for c in world.b.connections)


async def test_cells_start_over_past_their_bound(world: World, sessions,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """An export that meets more apps and scope lists than it keeps cells for drops them
    and reads the batch again, with the same result."""
    _tricky_world(world)
    factory, _ = sessions
    monkeypatch.setattr(service, "MAX_EXPORT_CELLS", 6)
    fast, python = await _both(factory, world, OverviewQuery(), 2)
    assert fast == python


async def test_a_reader_that_stops_leaves_no_statement_running(world: World, sessions
                                                               ) -> None:
    """A client gone mid-stream: the export's reads are cancelled and every connection
    goes back to the pool; nothing of the export still runs in the database."""
    _tricky_world(world)
    factory, engine = sessions
    stream = csv_stream(service.export_batches(factory, world.a.environment.id,
                                               OverviewQuery(), 2, notice_days=NOTICE_DAYS))
    assert (await anext(stream)).startswith("id,app_client_id,")
    await stream.aclose()
    await asyncio.sleep(0.05)
    assert engine.pool.checkedout() == 0
    async with factory() as session:
        running = (await (await session.connection()).execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state = 'active' AND pid <> pg_backend_pid() "
            "AND query LIKE '%string_agg%'"))).scalar()
    assert running == 0


async def test_new_app_met_mid_export_is_written(world: World, sessions) -> None:
    """Cells are made when an app or scope list is first met, in any batch."""
    factory, _ = sessions
    with world.sessions() as session:
        user = session.get(User, world.a.users["company"].id)
        for name in TRICKY[:5]:
            app = f.make_app(session, name=f"late {name}")
            f.make_connection(session, user, app, scopes=[name])
        session.commit()
    fast, python = await _both(factory, world, OverviewQuery(sort="-created_at"), 1)
    assert fast == python and "late 'HYP" not in fast and "late =HYPERLINK" in fast
