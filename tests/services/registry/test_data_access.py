"""The data-access log (issue 16, item 2), end to end: a partner's calls of the sync data
API, noted in Redis on the request path, moved to the database by the worker's real
flush job, read on the registry by the employee (GET /v1/me/data-access) and the
accountant (GET /v1/environment/employees/{id}/data-access); a flush stopped between its
steps loses nothing and counts nothing twice; the retention purge."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlmodel import select

from services.sync import access_log
from services.sync import jobs as sync_jobs
from services.sync.app import create_app as create_sync
from shared import data_access
from shared.config import Settings
from shared.data_access import PENDING_KEY, Access, note_accesses
from shared.db.types import utcnow
from shared.jobs import DATA_ACCESS_FLUSH, DATA_ACCESS_PURGE
from shared.models import App, BankAccount, Connection, DataAccess, Employee, User, entry_id
from shared.models import UserTemplate as T
from shared.policy import RULES
from shared.policy.dependency import OPERATION_KEY
from shared.runtime import Runtime
from shared.scopes import DATA_SCOPES
from tests.fixtures import factories as f
from tests.services.conftest import running
from tests.services.registry.conftest import World, bearer
from tests.services.registry.support import set_columns
from worker.main import build_worker

ME = "/v1/me/data-access"
ACCOUNTANT_SCOPE = "environment.connections.read"


@dataclass
class Scene:
    """In environment A: three employees of the connection's company (e1 with a bank
    account), one of another company; logins of e1 and e2 and one linked to nobody; a
    partner's connection covering the first company only."""

    employees: list[Employee]  # e1, e2, e3 (covered), other (not covered)
    account: BankAccount
    logins: dict[str, User]
    app: App
    connection: Connection

    def employee_log(self, index: int) -> str:
        return f"/v1/environment/employees/{self.employees[index].id}/data-access"


def _scene(world: World) -> Scene:
    tenant = world.a
    covered, other = tenant.companies[0], tenant.companies[1]
    with world.sessions() as session:
        employees = [f.make_employee(session, covered) for _ in range(3)]
        employees.append(f.make_employee(session, other))
        e1 = employees[0]
        account = BankAccount(environment_id=e1.environment_id, debtor_id=e1.debtor_id,
                              company_id=e1.company_id, employee_id=e1.id,
                              iban="NL91ABNA0417164300", account_holder="A. Jansen")
        session.add(account)
        logins = {name: f.make_user(session, tenant.environment, template=T.EMPLOYEE,
                                    debtor=tenant.debtors[0], employee_id=employee.id)
                  for name, employee in (("e1", e1), ("e2", employees[1]))}
        logins["nobody"] = f.make_user(session, tenant.environment, template=T.EMPLOYEE,
                                       debtor=tenant.debtors[0])
        app = session.get(App, world.apps[0].id)
        assert app is not None
        consenting = f.make_user(session, tenant.environment, template=T.MASTER_CLIENT,
                                 debtor=tenant.debtors[0])
        connection = f.make_connection(
            session, consenting, app, companies=[covered],
            scopes=["employee.info.read", "employee.bankaccount"])
        session.commit()
        for row in (*employees, account, *logins.values(), connection):
            session.refresh(row)
            session.expunge(row)
        session.refresh(app)
        session.expunge(app)
    return Scene(employees, account, logins, app, connection)


async def _flush(runtime: Runtime) -> int:
    """The worker's job itself."""
    return await sync_jobs.flush_data_access({"runtime": runtime})


async def _log(registry: httpx.AsyncClient, token: str, url: str,
               **params: Any) -> list[dict[str, Any]]:
    response = await registry.get(url, params=params, headers=bearer(token))
    assert response.status_code == 200, response.text
    return response.json()["data"]


def _summary(rows: list[dict[str, Any]]) -> set[tuple[str, str, int]]:
    return {(row["scope"], row["action"], row["count"]) for row in rows}


async def test_a_partners_reads_show_in_each_employees_log_and_the_accountants_view(
        world: World, client: httpx.AsyncClient, runtime: Runtime,
        redis_client: redis.Redis) -> None:
    scene = _scene(world)
    e1, e2, _, other = scene.employees
    token = bearer(world.connection_token(scene.connection))
    async with running(create_sync(world.settings)) as sync:
        listed = await sync.get(f"/v1/companies/{e1.company_id}/employees",
                                params={"limit": 2}, headers=token)
        assert listed.status_code == 200, listed.text
        assert [row["id"] for row in listed.json()["data"]] == [str(e1.id), str(e2.id)]
        accounts = await sync.get(f"/v1/employees/{e1.id}/bank-accounts", headers=token)
        assert accounts.status_code == 200, accounts.text
        read = await sync.get(f"/v1/employees/{e1.id}", headers=token)  # the fast path
        assert read.status_code == 200, read.text
        refused = await sync.get(f"/v1/employees/{other.id}", headers=token)
        assert refused.status_code == 404  # out of reach: nothing read, nothing logged
    assert redis_client.exists(PENDING_KEY)
    with world.sessions() as session:  # no database write on the request path
        assert session.exec(select(DataAccess)).first() is None

    assert await _flush(runtime) == 3
    assert not redis_client.exists(PENDING_KEY)
    mine = await _log(client, world.user_token(scene.logins["e1"], "connections.read"), ME)
    assert _summary(mine) == {("employee.info.read", "read", 2),
                              ("employee.bankaccount.read", "read", 1)}
    today = utcnow().date().isoformat()
    for row in mine:
        assert row["app"] == {"client_id": scene.app.client_id, "name": scene.app.name}
        assert row["connection_id"] == str(scene.connection.id)
        assert row["first_party"] is False and row["day"] == today
        assert row["first_at"] <= row["last_at"]
    theirs = await _log(client, world.user_token(scene.logins["e2"], "connections.read"), ME)
    assert _summary(theirs) == {("employee.info.read", "read", 1)}

    accountant = world.user_token(world.a.users["accountant"], ACCOUNTANT_SCOPE)
    assert _summary(await _log(client, accountant, scene.employee_log(0))) == _summary(mine)
    assert _summary(await _log(client, accountant, scene.employee_log(1))) == _summary(theirs)
    # Not received (the list's second page, another company): nothing.
    assert await _log(client, accountant, scene.employee_log(2)) == []
    assert await _log(client, accountant, scene.employee_log(3)) == []


async def test_a_write_shows_as_a_write_and_first_party_reads_are_marked(
        world: World, client: httpx.AsyncClient, runtime: Runtime) -> None:
    scene = _scene(world)
    e1 = scene.employees[0]
    staff = world.user_token(world.a.users["master_client"], "employee.info.read")
    async with running(create_sync(world.settings)) as sync:
        changed = await sync.patch(f"/v1/employees/{e1.id}/bank-accounts/{scene.account.id}",
                                   json={"iban": "NL02RABO0123456789"},
                                   headers=bearer(world.connection_token(scene.connection)))
        assert changed.status_code == 200, changed.text
        read = await sync.get(f"/v1/employees/{e1.id}", headers=bearer(staff))
        assert read.status_code == 200, read.text
    await _flush(runtime)
    rows = await _log(client, world.user_token(scene.logins["e1"], "connections.read"), ME)
    by_party = {row["first_party"]: row for row in rows}
    assert len(rows) == 2
    write = by_party[False]
    assert (write["scope"], write["action"], write["count"]) == (
        "employee.bankaccount", "write", 1)
    saas = by_party[True]
    assert saas["app"]["client_id"] == world.first_party.client_id
    assert saas["connection_id"] is None
    assert (saas["scope"], saas["action"], saas["count"]) == ("employee.info.read", "read", 1)


async def test_every_list_of_an_employees_data_is_logged_under_its_rules_scope(
        world: World, client: httpx.AsyncClient, runtime: Runtime) -> None:
    """Each GET /v1/employees/{employee_id}/... list of the sync document (a new slice too)
    shows in the employee's log under the scope its rule needs."""
    scene = _scene(world)
    e1 = scene.employees[0]
    reads = sorted(scope for scope in DATA_SCOPES if scope.endswith(".read"))
    set_columns(world, Connection, scene.connection.id, scopes=reads)
    scene.connection.scopes = reads
    app = create_sync(world.settings)
    document = app.openapi()
    lists = {path: RULES[ops["get"][OPERATION_KEY]].scopes[0]
             for path, ops in document["paths"].items()
             if path.startswith("/v1/employees/{employee_id}/") and path.count("{") == 1
             and "get" in ops}
    assert len(lists) >= 6
    token = bearer(world.connection_token(scene.connection))
    async with running(app) as sync:
        for path in lists:
            response = await sync.get(path.format(employee_id=e1.id), headers=token)
            assert response.status_code == 200, (path, response.text)
    await _flush(runtime)
    rows = await _log(client, world.user_token(scene.logins["e1"], "connections.read"), ME)
    assert _summary(rows) == {(scope, "read", list(lists.values()).count(scope))
                              for scope in lists.values()}


async def test_with_the_log_off_nothing_is_noted(world: World, redis_client: redis.Redis
                                                 ) -> None:
    """KOPPEL_DATA_ACCESS_LOG=false (the benchmark's comparison)."""
    scene = _scene(world)
    off = world.settings.model_copy(update={"data_access_log": False})
    token = bearer(world.connection_token(scene.connection))
    async with running(create_sync(off)) as sync:
        for url in (f"/v1/employees/{scene.employees[0].id}",
                    f"/v1/employees/{scene.employees[0].id}/bank-accounts"):
            response = await sync.get(url, headers=token)
            assert response.status_code == 200, response.text
    assert not redis_client.exists(PENDING_KEY)


def _access(scene: Scene, *employees: Employee) -> Access:
    return Access(scene.connection.environment_id, scene.app.client_id, scene.connection.id,
                  False, "employee.info.read", "read", tuple(e.id for e in employees))


def _counts(world: World) -> dict[uuid.UUID, int]:
    with world.sessions() as session:
        return {row.employee_id: row.count for row in session.exec(select(DataAccess))}


async def test_a_flush_stopped_before_its_commit_loses_nothing(
        world: World, runtime: Runtime, redis_client: redis.Redis) -> None:
    scene = _scene(world)
    e1, e2 = scene.employees[:2]
    assert await note_accesses(runtime.redis, [_access(scene, e1, e2)]) == 2
    batches = await access_log.take(runtime.redis)  # renamed to its taking key...
    assert len(batches) == 1 and not redis_client.exists(PENDING_KEY)

    def broken():
        raise RedisConnectionError("killed")  # ...and the process dies before the commit

    with pytest.raises(RedisConnectionError):
        await access_log.apply(runtime.redis, broken, batches[0])
    assert _counts(world) == {}
    await note_accesses(runtime.redis, [_access(scene, e1)])  # noted meanwhile
    assert await _flush(runtime) == 3  # the left batch (2 rows), then the new one (1)
    assert _counts(world) == {e1.id: 2, e2.id: 1}
    assert redis_client.keys("koppel:dataaccess:*") == []


async def test_a_flush_stopped_after_its_commit_counts_nothing_twice(
        world: World, runtime: Runtime, redis_client: redis.Redis) -> None:
    scene = _scene(world)
    e1 = scene.employees[0]
    await note_accesses(runtime.redis, [_access(scene, e1)])
    (batch,) = await access_log.take(runtime.redis)
    assert await access_log.apply(runtime.redis, runtime.async_session, batch) == 1
    # The process dies before deleting the batch: it is still there to apply...
    assert redis_client.exists(access_log.taking_key(batch))
    await note_accesses(runtime.redis, [_access(scene, e1)])
    await _flush(runtime)
    assert _counts(world) == {e1.id: 2}  # ...but its commit is known: applied once
    assert redis_client.keys("koppel:dataaccess:*") == []
    # Applying an applied batch again (two flushes at once) writes nothing.
    assert await access_log.apply(runtime.redis, runtime.async_session, batch) == 0


async def test_the_flush_adds_to_the_day_and_keeps_the_earliest_and_latest(
        world: World, runtime: Runtime) -> None:
    scene = _scene(world)
    e1 = scene.employees[0]
    noon = utcnow().replace(hour=12, minute=0, second=0, microsecond=0).timestamp()
    await note_accesses(runtime.redis, [_access(scene, e1)], noon)
    await _flush(runtime)
    await note_accesses(runtime.redis, [_access(scene, e1)], noon + 60)
    await note_accesses(runtime.redis, [_access(scene, e1)], noon - 60)
    await _flush(runtime)
    with world.sessions() as session:
        (row,) = session.exec(select(DataAccess)).all()
    assert row.count == 3
    assert row.first_at.timestamp() == noon - 60 and row.last_at.timestamp() == noon + 60


async def test_concurrent_notes_share_calls_and_all_count(world: World, runtime: Runtime
                                                          ) -> None:
    """Requests noting at once go in shared Lua calls (group commit): every one counts."""
    scene = _scene(world)
    e1, e2 = scene.employees[:2]
    counted = await asyncio.gather(*(note_accesses(runtime.redis, [_access(scene, e1, e2)])
                                     for _ in range(50)))
    assert counted == [2] * 50
    await _flush(runtime)
    assert _counts(world) == {e1.id: 50, e2.id: 50}


def _row(scene: Scene, employee: Employee, day: date) -> DataAccess:
    at = utcnow()
    return DataAccess(
        id=entry_id(employee.environment_id, scene.app.client_id, scene.connection.id,
                    employee.id, "employee.info.read", "read", day, False),
        environment_id=employee.environment_id, employee_id=employee.id,
        client_id=scene.app.client_id, connection_id=scene.connection.id,
        scope="employee.info.read", action="read", day=day, count=1, first_at=at, last_at=at)


async def test_the_retention_purge_deletes_only_older_days(world: World, runtime: Runtime
                                                           ) -> None:
    scene = _scene(world)
    e1 = scene.employees[0]
    today = utcnow().date()
    days = [today - timedelta(days=n) for n in (401, 400, 399, 0)]
    with world.sessions() as session:
        for day in days:
            session.add(_row(scene, e1, day))
        session.commit()
    assert runtime.settings.data_access_retention_days == 400
    assert await sync_jobs.purge_data_access({"runtime": runtime}) == 1
    with world.sessions() as session:
        kept = sorted(row.day for row in session.exec(select(DataAccess)))
    assert kept == days[1:]
    assert await access_log.purge(runtime.async_session, 10, today) == 2


async def test_an_employee_sees_only_their_own_log_and_partners_none(
        world: World, client: httpx.AsyncClient, runtime: Runtime) -> None:
    scene = _scene(world)
    e1 = scene.employees[0]
    await note_accesses(runtime.redis, [_access(scene, e1)])
    await _flush(runtime)
    e1_rows = await _log(client, world.user_token(scene.logins["e1"], "connections.read"), ME)
    assert len(e1_rows) == 1
    assert await _log(client, world.user_token(scene.logins["e2"], "connections.read"),
                      ME) == []
    assert await _log(client, world.user_token(scene.logins["nobody"], "connections.read"),
                      ME) == []
    # The accountant of another environment: no such employee.
    foreign = world.user_token(world.b.users["accountant"], ACCOUNTANT_SCOPE)
    response = await client.get(scene.employee_log(0), headers=bearer(foreign))
    assert response.status_code == 404
    # An employee's token may not read the accountant's view, even of its own record.
    own = world.user_token(scene.logins["e1"], ACCOUNTANT_SCOPE)
    response = await client.get(scene.employee_log(0), headers=bearer(own))
    assert response.status_code == 403
    partner = bearer(world.app_token(scene.app))
    for url in (ME, scene.employee_log(0)):
        response = await client.get(url, headers=partner)
        assert response.status_code == 403, url
    assert _counts(world) == {e1.id: 1}  # e2 has no entry to see


async def test_the_accountant_filters_pages_and_exports(
        world: World, client: httpx.AsyncClient, runtime: Runtime) -> None:
    scene = _scene(world)
    e1 = scene.employees[0]
    today = utcnow().date()
    with world.sessions() as session:
        for n in range(3):
            session.add(_row(scene, e1, today - timedelta(days=n)))
        other = _row(scene, e1, today)
        other.client_id, other.scope = world.apps[1].client_id, "employee.bankaccount.read"
        other.id = uuid.uuid4()
        session.add(other)
        session.commit()
    token = world.user_token(world.a.users["accountant"], ACCOUNTANT_SCOPE)
    url = scene.employee_log(0)
    assert len(await _log(client, token, url)) == 4
    only_app = await _log(client, token, url, client_id=world.apps[1].client_id)
    assert [(r["app"]["name"], r["scope"]) for r in only_app] == [
        (world.apps[1].name, "employee.bankaccount.read")]
    assert len(await _log(client, token, url, scope="employee.info.read")) == 3
    window = await _log(client, token, url, **{"from": str(today - timedelta(days=1)),
                                               "to": str(today - timedelta(days=1))})
    assert [r["day"] for r in window] == [str(today - timedelta(days=1))]
    seen, params = [], {"limit": 1}
    while True:
        response = await client.get(url, params=params, headers=bearer(token))
        assert response.status_code == 200, response.text
        body = response.json()
        seen += body["data"]
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert len(seen) == 4 and [r["day"] for r in seen] == sorted(
        (r["day"] for r in seen), reverse=True)
    bad = await client.get(url, params={"cursor": "forged"}, headers=bearer(token))
    assert bad.status_code == 400
    exported = await client.get(url, params={"scope": "employee.info.read"},
                                headers={**bearer(token), "Accept": "text/csv"})
    assert exported.status_code == 200 and exported.headers["content-type"].startswith(
        "text/csv")
    lines = list(csv.DictReader(io.StringIO(exported.text)))
    assert [line["day"] for line in lines] == [
        str(today - timedelta(days=n)) for n in range(3)]
    assert {line["app_client_id"] for line in lines} == {scene.app.client_id}


def test_the_worker_flushes_every_15_seconds_and_purges_daily(settings: Settings) -> None:
    """A read shows within a minute: the flush runs four times a minute."""
    worker = build_worker(settings, burst=True)
    flush = next(c for c in worker.cron_jobs if c.name == DATA_ACCESS_FLUSH)
    seconds = sorted(flush.second)
    gaps = [b - a for a, b in zip(seconds, [*seconds[1:], seconds[0] + 60], strict=True)]
    assert max(gaps) <= 15
    purge = next(c for c in worker.cron_jobs if c.name == DATA_ACCESS_PURGE)
    assert isinstance(purge.hour, int) and isinstance(purge.minute, int)


async def test_a_write_that_changes_nothing_is_a_read(world: World, client: httpx.AsyncClient,
                                                     runtime: Runtime) -> None:
    """The same IBAN again changes nothing (no event): the app only saw the record, so
    the log says `read` of `employee.bankaccount.read`; a real change says `write`."""
    scene = _scene(world)
    e1 = scene.employees[0]
    url = f"/v1/employees/{e1.id}/bank-accounts/{scene.account.id}"
    token = bearer(world.connection_token(scene.connection))
    async with running(create_sync(world.settings)) as sync:
        same = await sync.patch(url, json={"iban": scene.account.iban}, headers=token)
        assert same.status_code == 200, same.text
        other = await sync.patch(url, json={"account_holder": "A. de Vries"}, headers=token)
        assert other.status_code == 200, other.text
    await _flush(runtime)
    rows = await _log(client, world.user_token(scene.logins["e1"], "connections.read"), ME)
    assert _summary(rows) == {("employee.bankaccount.read", "read", 1),
                              ("employee.bankaccount", "write", 1)}


async def test_a_pending_hash_that_redis_brings_back_is_not_counted_twice(
        world: World, runtime: Runtime, redis_client: redis.Redis) -> None:
    """Redis restarting from a snapshot taken before a flush brings the applied notes
    back: their generation meets its batch row, so they count once (what was noted after
    the snapshot is what Redis lost)."""
    scene = _scene(world)
    e1 = scene.employees[0]
    await note_accesses(runtime.redis, [_access(scene, e1)])
    snapshot = redis_client.dump(PENDING_KEY)
    await _flush(runtime)
    redis_client.restore(PENDING_KEY, 0, snapshot)  # as a restart from that snapshot
    await _flush(runtime)
    assert _counts(world) == {e1.id: 1}
    assert not redis_client.keys("koppel:dataaccess:taking:*")
    await note_accesses(runtime.redis, [_access(scene, e1)])  # a new generation counts
    await _flush(runtime)
    assert _counts(world) == {e1.id: 2}


async def test_a_burst_goes_as_bounded_calls_and_all_count(
        world: World, runtime: Runtime, redis_client: redis.Redis,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Notes of many employees at once go as several Lua calls of at most
    MAX_PAIRS_PER_CALL entries (no one script holds Redis for long), and all count."""
    scene = _scene(world)
    monkeypatch.setattr(data_access, "MAX_PAIRS_PER_CALL", 2)
    calls: list[int] = []
    real = redis.asyncio.client.Pipeline.execute

    async def counted(self, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(self.command_stack))
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(redis.asyncio.client.Pipeline, "execute", counted)
    assert await note_accesses(runtime.redis, [_access(scene, *scene.employees)]) == 4
    assert calls == [2]  # one round trip, two calls of two entries
    await _flush(runtime)
    assert _counts(world) == {e.id: 1 for e in scene.employees}


async def test_a_failed_shared_call_never_leaves_a_request_waiting(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever ends the shared call (here: it is cancelled), each request waiting for
    it gets its answer (not noted) instead of waiting for ever."""
    async def cancelled(client: Any, args: list[str]) -> bool:
        await asyncio.sleep(0.01)
        raise asyncio.CancelledError

    monkeypatch.setattr(data_access, "_send", cancelled)
    access = Access(uuid.uuid4(), "client", None, True, "employee.info.read", "read",
                    (uuid.uuid4(),))
    assert await asyncio.wait_for(note_accesses(runtime.redis, [access]), 5) == 0
