"""The sync service's scenarios: authenticated reads (and p99 at half that load), DPoP-bound
reads beside bearer reads (and the DPoP check's server CPU per call, from the `dpop`
probe), reads with scope-usage tracking and with the data-access log on, each beside a
second sync with it off, webhook deliveries per worker process, and commit-to-receiver
latency at a fixed write rate. `koppel serve sync` and `koppel worker` on the server
core; the load generator and the webhook receiver (bench/sync_bench.py's) in this
process, on the load core."""

from __future__ import annotations

import asyncio
import base64
import math
import os
import sys
import time
import uuid
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from bench.harness import refs, repeat
from bench.harness.common import KOPPEL, percentile, say
from bench.harness.context import PORTS, Ctx, url
from bench.harness.dpop_probe import BATCH, CONCURRENCY, write_input
from bench.harness.load import Exhausted, open_loop
from bench.harness.procs import Proc
from bench.harness.proofs import EcKey
from bench.harness.world import World
from bench.sync_bench import READ_CONNECTIONS_PER_APP
from bench.sync_bench import Receiver as CountingReceiver

READ_APPS = 20
DELIVERY_APPS, DELIVERY_ENDPOINTS = 10, 5
LATENCY_APPS = 3
LATENCY_RATE = float(os.environ.get("BENCH_LATENCY_RATE", "500"))
DRAIN_TIMEOUT_S = float(os.environ.get("BENCH_DRAIN_TIMEOUT", "90"))


class Receiver(CountingReceiver):
    """Counts every delivery; keeps latencies only of the latency scenario's endpoint, so
    that a late delivery of an earlier backlog cannot skew them."""

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        now = time.time()
        self.count += 1
        self.first = self.first or now
        self.last = now
        msg = request.headers.get("webhook-id", "")
        if request.path.startswith("/latency/") and msg.startswith("msg_"):
            created_ms = uuid.UUID(msg[4:]).int >> 80  # UUIDv7: unix milliseconds
            self.latencies_ms.append(now * 1000 - created_ms)
        return web.Response(text="ok")


def _reset_limits(ctx: Ctx) -> None:
    """Rate-limit windows start afresh before each run (the limits are not raised)."""
    ctx.redis.delete_matching("koppel:rl:*")


def read_tokens(world: World) -> list[str]:
    tokens: list[str] = []
    for _ in range(READ_APPS):
        tokens += world.app_with_connections(["employee.info.read"], READ_CONNECTIONS_PER_APP)[1]
    return tokens


def dpop_read_tokens(world: World, key: EcKey) -> list[str]:
    """Connection tokens as read_tokens makes them, DPoP-bound (`cnf.jkt`) to `key`."""
    tokens: list[str] = []
    for _ in range(READ_APPS):
        tokens += world.app_with_connections(["employee.info.read"], READ_CONNECTIONS_PER_APP,
                                             jkt=key.jkt)[1]
    return tokens


def latency_tokens(world: World) -> tuple[str, list[str]]:
    """The subscribing app's own token, and connection tokens of LATENCY_APPS apps."""
    app_token, tokens = world.app_with_connections(["employee.info"], READ_CONNECTIONS_PER_APP)
    for _ in range(LATENCY_APPS - 1):
        tokens += world.app_with_connections(["employee.info"], READ_CONNECTIONS_PER_APP)[1]
    return app_token, tokens


async def reads(ctx: Ctx, world: World, tokens: list[str], server: Proc) -> None:
    await refs.bare_fastapi(ctx)
    employees = [str(e) for e in world.employees]
    state = {"n": 0}

    async def read(http):
        state["n"] += 1
        n = state["n"]
        async with http.get(f"{url('sync')}/v1/employees/{employees[n % len(employees)]}",
                            headers={"Authorization": f"Bearer {tokens[n % len(tokens)]}"}) as r:
            body = await r.read()
            if r.status != 200 and not first_error:
                first_error.append(f"{r.status} {body[:300].decode(errors='replace')}")
            return r.status

    first_error: list[str] = []
    figure = await repeat.rates(ctx, "reads", read, before_run=lambda _: _reset_limits(ctx),
                                server=server)
    if first_error:
        figure.notes.append(f"first failed read: {first_error[0]}")
    half = figure.median / 2
    p99 = ctx.figure("reads_p99", "ms")
    for i in range(ctx.runs if half >= 1 else 0):
        _reset_limits(ctx)
        outcome, late = await open_loop(read, half, ctx.seconds)
        p99.runs.append(percentile(outcome.latencies_ms, 99))
        if outcome.errors:
            p99.notes.append(f"{outcome.errors} failed reads at {half:.0f}/s")
        say(f"  reads p99 at {half:,.0f}/s run {i + 1}/{ctx.runs}: {p99.runs[-1]:.1f} ms"
            f" (sender at most {late:.0f} ms behind)")
    p99.notes.append(f"open loop at {half:,.0f} reads/s (half the median rate)")


async def dpop_reads(ctx: Ctx, world: World, env: dict[str, str], bearer_tokens: list[str],
                     dpop_tokens: list[str], key: EcKey, server: Proc) -> None:
    """Reads of one employee with bearer tokens and with DPoP-bound tokens, each with a
    fresh proof (signed in a batch before each run: jti, htm, htu, ath, iat), same
    server, runs taken in turn; then the DPoP check's added server CPU per call, measured
    in the sync app itself by the `dpop` probe (bench/harness/dpop_probe.py) on the
    server core."""
    employees = [f"{url('sync')}/v1/employees/{e}" for e in world.employees]
    state = {"n": 0}
    batch: list[tuple[str, dict[str, str]]] = []

    async def bearer(http):
        state["n"] += 1
        n = state["n"]
        async with http.get(employees[n % len(employees)], headers={
                "Authorization": f"Bearer {bearer_tokens[n % len(bearer_tokens)]}"}) as r:
            await r.read()
            return r.status

    def prepare(rate: float) -> None:
        _reset_limits(ctx)
        now = int(time.time())
        batch[:] = []
        for n in range(max(2000, int(rate * ctx.seconds * 1.5))):
            target, token = employees[n % len(employees)], dpop_tokens[n % len(dpop_tokens)]
            batch.append((target, {"Authorization": f"DPoP {token}",
                                   "DPoP": key.dpop_proof("GET", target, token, now)}))

    first_error: list[str] = []

    async def dpop(http):
        try:
            target, headers = batch.pop()
        except IndexError:
            raise Exhausted from None
        async with http.get(target, headers=headers) as r:
            body = await r.read()
            if r.status != 200 and not first_error:
                first_error.append(f"{r.status} {body[:300].decode(errors='replace')}")
            return r.status

    plain, bound = await repeat.interleaved(ctx, [
        ("dpop_bearer_reads", bearer, lambda _: _reset_limits(ctx)),
        ("dpop_reads", dpop, prepare)], server=server)
    if first_error:
        bound.notes.append(f"first failed DPoP read: {first_error[0]}")
    added = ctx.figure("dpop_cpu_us", "us")
    probe_input = ctx.var / "dpop_probe.json"
    write_input(probe_input, [str(e) for e in world.employees], bearer_tokens, dpop_tokens, key)
    per_call = []
    try:
        for i in range(ctx.runs):
            result = refs.probe("dpop", ctx.seconds, env, str(probe_input))
            added.runs.append(result["added_us"])
            per_call.append((result["bearer_us"], result["dpop_us"], result["check_us"]))
            say(f"  dpop probe run {i + 1}/{ctx.runs}: {result['added_us']:.1f} us added "
                f"(bearer {result['bearer_us']:.0f} us, DPoP {result['dpop_us']:.0f} us of "
                f"CPU per call over {result['calls']:,.0f} calls each, the mean adding "
                f"{result['added_mean_us']:.0f} us; the proof check alone "
                f"{result['check_us']:.0f} us)")
    finally:
        probe_input.unlink(missing_ok=True)  # it holds live tokens and the DPoP key
        _reset_limits(ctx)
    added.notes.append(
        "CPU per call of one process on the server core running the sync app (every "
        "middleware, the direct employee read) behind uvicorn's HTTP protocol over "
        f"in-memory connections, {CONCURRENCY} connections busy, rounds of a batch of "
        f"{BATCH} bearer and {BATCH} DPoP reads; the median over the rounds of DPoP minus "
        "bearer per call; per call over the run (bearer/DPoP/the proof check alone): "
        + ", ".join(f"{b:.0f}/{d:.0f}/{c:.0f}" for b, d, c in per_call) + " us")
    throughput = [(1 / d - 1 / b) * 1e6 for d, b in zip(bound.runs, plain.runs, strict=False)
                  if d and b]
    per_cpu = [(1 / d - 1 / b) * 1e6 for d, b in zip(bound.per_cpu, plain.per_cpu,
                                                      strict=False) if d and b]
    if throughput:
        added.notes.append("from the HTTP runs instead (noisy: the difference of two loaded "
                           "rates), 1/DPoP reads/s - 1/bearer reads/s: "
                           + ", ".join(f"{v:.0f}" for v in throughput) + " us; from requests "
                           "per server CPU-second: " + ", ".join(f"{v:.0f}" for v in per_cpu)
                           + " us")
    added.notes.append(f"the floor on this machine: one ES256 signature verification "
                       f"(cryptography, OpenSSL) alone takes {_es256_verify_us(key):.0f} us")


def _es256_verify_us(key: EcKey, n: int = 2000) -> float:
    """CPU microseconds of one raw ES256 verification of a proof's signature (the one
    cryptographic step of a DPoP check), in this process."""
    public = key.private.public_key()
    signed = []
    for _ in range(n):
        signing_input, _, signature = key.dpop_proof("GET", url("sync")).rpartition(".")
        raw = base64.urlsafe_b64decode(signature + "==")
        signed.append((encode_dss_signature(int.from_bytes(raw[:32], "big"),
                                            int.from_bytes(raw[32:], "big")),
                       signing_input.encode()))
    start = time.process_time()
    for der, data in signed:
        public.verify(der, data, ec.ECDSA(hashes.SHA256()))
    return (time.process_time() - start) / n * 1e6


@dataclass(frozen=True)
class Switch:
    """A setting whose cost on the reads is measured: the same reads from sync as
    configured (on) and from a second sync with the setting off, runs taken in turn."""

    scenario: str
    variable: str  # the setting, set to false on the second sync
    on: str  # the figures' names
    off: str
    server: str  # the second sync's name (its port, bench/harness/context.py)


SWITCHES = [
    # Issue 19: at least 0.95x.
    Switch("scope_usage", "KOPPEL_SCOPE_USAGE_TRACKING", "reads_tracked", "reads_untracked",
           "sync_untracked"),
    # Issue 16: at least 0.9x.
    Switch("data_access", "KOPPEL_DATA_ACCESS_LOG", "reads_logged", "reads_unlogged",
           "sync_unlogged"),
]


async def switched_reads(ctx: Ctx, world: World, tokens: list[str], switch: Switch) -> None:
    """Reads of one employee from sync (the setting on, as by default) and from the
    second sync with it off, runs taken in turn. Both processes are on the server core;
    one is loaded at a time."""
    await reads_in_turn(ctx, world, tokens, (switch.off, switch.server), (switch.on, "sync"))


def serve_granian(ctx: Ctx, env: dict[str, str]) -> Proc:
    """The same sync app (its factory, as `koppel serve` runs it) under granian, one
    worker, single-threaded runtime, uvloop, on the server core (issue 18, item 2)."""
    proc = Proc("sync_granian", [sys.executable, "-m", "granian", "--interface", "asgi",
                                 "--factory", "--host", "127.0.0.1", "--port",
                                 str(PORTS["sync_granian"]), "--workers", "1",
                                 "--runtime-mode", "st", "--loop", "uvloop", "--no-ws",
                                 "services.sync.app:create_app"], env, ctx.log_dir)
    proc.wait_http(f"{url('sync_granian')}/readyz")
    return proc


async def reads_in_turn(ctx: Ctx, world: World, tokens: list[str],
                        *figures: tuple[str, str]) -> None:
    """Reads of one employee from each (figure, server), runs taken in turn."""
    employees = [str(e) for e in world.employees]

    def reader(service: str):
        state = {"n": 0}

        async def read(http):
            state["n"] += 1
            n = state["n"]
            async with http.get(f"{url(service)}/v1/employees/{employees[n % len(employees)]}",
                                headers={"Authorization": f"Bearer {tokens[n % len(tokens)]}"}
                                ) as r:
                await r.read()
                return r.status

        return read

    def reset(_: float) -> None:
        _reset_limits(ctx)

    await repeat.interleaved(ctx, [(figure, reader(server), reset)
                                   for figure, server in figures])


async def _create_hooks(http: aiohttp.ClientSession, app_token: str, receiver_port: int,
                        path: str, count: int) -> list[tuple[str, str]]:
    hooks = []
    for e in range(count):
        async with http.post(f"{url('sync')}/v1/webhooks",
                             headers={"Authorization": f"Bearer {app_token}"},
                             json={"url": f"http://127.0.0.1:{receiver_port}/{path}/{e}",
                                   "events": ["employee.updated"]}) as r:
            body = await r.json()
            if r.status != 201:
                raise RuntimeError(f"creating a webhook endpoint: {r.status} {body}")
            hooks.append((app_token, body["id"]))
    return hooks


async def _delete_hooks(http: aiohttp.ClientSession, hooks: list[tuple[str, str]]) -> None:
    for app_token, hook_id in hooks:
        async with http.delete(f"{url('sync')}/v1/webhooks/{hook_id}",
                               headers={"Authorization": f"Bearer {app_token}"}) as r:
            await r.read()


def _worker(ctx: Ctx, env: dict[str, str]) -> Proc:
    return Proc("worker", [KOPPEL, "worker"], env, ctx.log_dir)


async def deliveries(ctx: Ctx, world: World, env: dict[str, str], receiver: Receiver,
                     http: aiohttp.ClientSession, app_tokens: list[str]) -> None:
    """Per run: a backlog of events x apps x endpoints deliveries written while no worker
    runs, then one worker process drains it; deliveries/s from first to last receipt."""
    await refs.signed_send(ctx, f"http://127.0.0.1:{receiver.port}/raw")
    hooks = []
    for a, app_token in enumerate(app_tokens):
        hooks += await _create_hooks(http, app_token, receiver.port, f"a{a}", DELIVERY_ENDPOINTS)
    fan_out = len(hooks)
    figure = ctx.figure("deliveries", "/s")
    expected = receiver.count
    rate = 0.0
    try:
        for i in range(ctx.runs + 1):  # the first is the warm-up (and sizes the others)
            backlog = 1000 if i == 0 else min(30_000, max(1000, int(rate * ctx.seconds)))
            events = math.ceil(backlog / fan_out)
            world.write_events(events)
            expected += events * fan_out
            start_count, receiver.first = receiver.count, 0.0
            worker = _worker(ctx, env)
            began = time.time()
            try:
                while receiver.count < expected and time.time() - began < DRAIN_TIMEOUT_S:
                    await asyncio.sleep(0.05)
                cpu = worker.cpu_seconds()
            finally:
                worker.stop()
            got = receiver.count - start_count
            span = max(receiver.last - receiver.first, 1e-3)
            run_rate = got / span
            if receiver.count < expected:
                figure.notes.append(f"run {i}: {expected - receiver.count} deliveries not "
                                    f"received within {DRAIN_TIMEOUT_S:.0f} s")
            if i == 0:  # size the runs by the warm-up's rate, worker start-up included
                rate = got / max(receiver.last - began, span)
                continue
            figure.runs.append(run_rate)
            figure.per_cpu.append(got / cpu)
            rate = max(rate, run_rate)
            say(f"  deliveries run {i}/{ctx.runs}: {got} in {span:.1f} s = {run_rate:,.0f}/s "
                f"(worker CPU incl. start-up: {got / cpu:,.0f} per CPU-second)")
    finally:
        await _delete_hooks(http, hooks)
    figure.notes.append(f"{fan_out} endpoints; per CPU-second: the worker's, start-up and "
                        "relay included")


async def latency(ctx: Ctx, world: World, env: dict[str, str], receiver: Receiver,
                  http: aiohttp.ClientSession, app_token: str, tokens: list[str],
                  server: Proc) -> None:
    """PATCH /v1/employees/{id} at LATENCY_RATE/s, worker running; latency from the
    event's creation in the API transaction (its UUIDv7) to the receiver, and each
    process's CPU per write (the worker's: relay, claim, send and record per event)."""
    hooks = await _create_hooks(http, app_token, receiver.port, "latency", 1)
    employees = [str(e) for e in world.employees]
    state = {"n": 0}

    async def patch(client):
        state["n"] += 1
        n = state["n"]
        async with client.patch(
                f"{url('sync')}/v1/employees/{employees[n % len(employees)]}",
                headers={"Authorization": f"Bearer {tokens[n % len(tokens)]}"},
                json={"last_name": f"Bench {n}"}) as r:
            await r.read()
            return r.status

    p50, p99 = ctx.figure("latency_p50", "ms"), ctx.figure("latency_p99", "ms")
    worker = _worker(ctx, env)
    try:
        await asyncio.sleep(3)  # the worker's start-up
        for i in range(ctx.runs + 1):  # the first is the warm-up
            _reset_limits(ctx)
            receiver.latencies_ms = []
            cpu = (worker.cpu_seconds(), server.cpu_seconds())
            outcome, late = await open_loop(patch, LATENCY_RATE, repeat.WARM_UP_S if i == 0
                                            else ctx.seconds)
            deadline = time.time() + 30
            while len(receiver.latencies_ms) < outcome.done and time.time() < deadline:
                await asyncio.sleep(0.05)
            values = receiver.latencies_ms
            worker_ms, api_ms = ((now - then) * 1000 / max(outcome.done, 1) for now, then in
                                 zip((worker.cpu_seconds(), server.cpu_seconds()), cpu,
                                     strict=True))
            if i == 0 or not values:
                continue
            p50.runs.append(percentile(values, 50))
            p99.runs.append(percentile(values, 99))
            missing = outcome.done - len(values)
            if outcome.errors or missing:
                p99.notes.append(f"run {i}: {outcome.errors} failed writes, {missing} "
                                 "webhooks not received within 30 s")
            say(f"  latency run {i}/{ctx.runs}: {outcome.done} writes at {LATENCY_RATE:g}/s "
                f"(sender at most {late:.0f} ms behind): p50 {p50.runs[-1]:.0f} ms, "
                f"p99 {p99.runs[-1]:.0f} ms; CPU per write: worker {worker_ms:.2f} ms, "
                f"API {api_ms:.2f} ms")
    finally:
        worker.stop()
        await _delete_hooks(http, hooks)
    p50.notes.append(f"{LATENCY_RATE:g} writes/s, API and worker on the server core")


async def run(ctx: Ctx, world: World, env: dict[str, str], chosen: list[str]) -> None:
    # Apps, connections and tokens exist before the service starts, as in production.
    switches = [switch for switch in SWITCHES if switch.scenario in chosen]
    readers = read_tokens(world) if ({"reads", "dpop_reads", "server"} & set(chosen)
                                     or switches) else []
    dpop_key = EcKey()
    bound = dpop_read_tokens(world, dpop_key) if "dpop_reads" in chosen else []
    senders = [world.app_with_connections(["employee.info.read"], 1)[0]
               for _ in range(DELIVERY_APPS)] if "deliveries" in chosen else []
    writer, writers = latency_tokens(world) if "latency" in chosen else ("", [])
    server = ctx.serve("sync", env)
    receiver = Receiver()
    runner = await receiver.start()
    try:
        if "reads" in chosen:
            await reads(ctx, world, readers, server)
        if "dpop_reads" in chosen:
            await dpop_reads(ctx, world, env, readers, bound, dpop_key, server)
        for switch in switches:
            off = ctx.serve("sync", {**env, switch.variable: "false"}, name=switch.server)
            try:
                await switched_reads(ctx, world, readers, switch)
            finally:
                off.stop()
        if "server" in chosen:
            granian = serve_granian(ctx, env)
            try:
                await reads_in_turn(ctx, world, readers, ("reads_uvicorn", "sync"),
                                    ("reads_granian", "sync_granian"))
            finally:
                granian.stop()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=600)) as http:
            if "deliveries" in chosen:
                await deliveries(ctx, world, env, receiver, http, senders)
            if "latency" in chosen:
                await latency(ctx, world, env, receiver, http, writer, writers, server)
    finally:
        server.stop()
        await runner.cleanup()
