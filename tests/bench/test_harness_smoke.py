"""The `make bench` harness stays runnable: on PostgreSQL and Redis it seeds its own
database, measures the bare FastAPI reference and Koppel's client-credentials grant for a
second each (no oidc-provider peer, so no Node.js), and reports them in its table."""

from __future__ import annotations

import asyncio
import os
from urllib.parse import urlsplit

import pytest

from bench.harness import auth_scenarios, context, infra, procs, refs, repeat
from bench.harness.common import Figure
from bench.harness.context import Ctx
from bench.harness.dpop_probe import BATCH, write_input
from bench.harness.proofs import EcKey
from bench.harness.report import SOAK_BEGIN, rows, text_table, write_doc
from bench.harness.world import World
from tests.fixtures.backend import configured_database_url, configured_redis_url
from tests.multi_instance.cluster import free_ports


@pytest.fixture
def harness(tmp_path, monkeypatch):
    """The harness aimed at the test run's servers, on free ports, with its own database
    and a Redis database claimed like the test suite's."""
    redis_url = configured_redis_url()
    if redis_url is None:
        pytest.skip("needs KOPPEL_TEST_REDIS_URL")
    redis_parts = urlsplit(redis_url)
    monkeypatch.setattr(infra, "PG", configured_database_url().rsplit("/", 1)[0])
    monkeypatch.setattr(infra, "REDIS_SERVER", f"{redis_parts.scheme}://{redis_parts.netloc}")
    monkeypatch.setattr(repeat, "WARM_UP_S", 0.5)
    for name, port in zip(list(context.PORTS), free_ports(len(context.PORTS)), strict=True):
        monkeypatch.setitem(context.PORTS, name, port)
    database = f"koppel_bench_smoke_{os.getpid()}"
    ctx = Ctx(runs=1, seconds=1, concurrency=4, var=tmp_path, redis=infra.RedisDb("bench-smoke"))
    env = ctx.env(infra.recreate_database(database), tmp_path / "world")
    try:
        yield ctx, env
    finally:
        infra.drop_database(database)
        ctx.redis.release()


@pytest.mark.postgres_only
def test_harness_measures_a_reference_and_a_koppel_scenario(harness, tmp_path):
    ctx, env = harness
    world = World(env, ctx.redis.url, employees=1)

    async def measure() -> None:
        await refs.bare_fastapi(ctx)
        await auth_scenarios.run(ctx, world, env, ["client_credentials"])

    try:
        asyncio.run(measure())
    finally:
        world.engine.dispose()

    bare, grants = ctx.figures["ref_bare"], ctx.figures["client_credentials"]
    assert len(bare.runs) == 1 and bare.median > 0
    assert len(grants.runs) == 1 and grants.median > 0
    assert grants.notes == []  # every grant answered 200

    table = text_table(rows(ctx.figures, ["client_credentials"]))
    assert "client-credentials grants/s" in table
    assert "reference: bare FastAPI" in table
    # Without the peer there is no ratio to judge; with one, the ratio decides.
    assert table.splitlines()[2].rstrip().endswith("n/a")
    ctx.figures["ref_peer_cc"] = Figure("/s", [grants.median / 2])
    judged = rows(ctx.figures, ["client_credentials"])[0]
    assert judged[6] == "2.00x" and judged[8] == "yes"
    assert grants.per_cpu and grants.per_cpu[0] > 0  # requests per auth-server CPU-second


@pytest.mark.postgres_only
def test_the_dpop_probe_times_both_reads_in_the_sync_app_and_fails_on_a_refused_one(
        harness, tmp_path):
    ctx, env = harness
    world = World(env, ctx.redis.url, employees=1)
    key = EcKey()
    try:
        bearer = world.app_with_connections(["employee.info.read"], 2)[1]
        bound = world.app_with_connections(["employee.info.read"], 2, jkt=key.jkt)[1]
    finally:
        world.engine.dispose()
    employees = [str(e) for e in world.employees]
    given = tmp_path / "probe.json"
    write_input(given, employees, bearer, bound, key)
    result = refs.probe("dpop", 0.2, env, str(given))
    assert result["calls"] >= BATCH and result["rounds"] >= 1
    assert result["bearer_us"] > 0 and result["dpop_us"] > 0
    assert result["added_mean_us"] == pytest.approx(result["dpop_us"] - result["bearer_us"])
    # DPoP-bound tokens sent as Bearer are refused (401): the probe fails, loudly.
    write_input(given, employees, bound, bound, key)
    with pytest.raises(RuntimeError, match="not answered 200"):
        refs.probe("dpop", 0.2, env, str(given))


def test_report_keeps_the_soak_and_history_sections(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# old\n\n<!-- soak:begin -->\n## Soak\nold soak\n<!-- soak:end -->\n\n"
                   "## History\n\nolder notes\n")
    write_doc(doc, "# Benchmarks\n\nnew table\n")
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nnew table")
    assert "old soak" in text and text.index(SOAK_BEGIN) < text.index("## History")
    assert "older notes" in text and "# old" not in text
    write_doc(doc, "# Benchmarks\n\nnewer\n", soak="## Soak\nnew soak")
    assert "new soak" in doc.read_text() and "old soak" not in doc.read_text()


def test_processes_under_test_run_on_the_server_core_once_the_harness_pins_itself(tmp_path):
    if not procs.can_pin():
        pytest.skip("needs two cores")
    procs.pin_self()
    try:
        assert os.sched_getaffinity(0) == {procs.LOAD_CORE}
        child = procs.Proc("sleeper", ["sleep", "10"], os.environ.copy(), tmp_path)
        try:
            assert os.sched_getaffinity(child.pid) == {procs.SERVER_CORE}
        finally:
            child.stop()
    finally:
        procs.unpin_self()
