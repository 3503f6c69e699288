"""The DPoP check's added server CPU per call (issue 15), measured in-process: the real sync
app (`services.sync.app:create_app`, its lifespan, every middleware, the direct employee
read, PostgreSQL and Redis) behind uvicorn's own HTTP/1.1 protocol (httptools, set up as
`koppel serve` sets it up) over in-memory connections, for the same employee reads with
bearer tokens and with DPoP-bound tokens and a fresh proof each, in one process pinned to
the server core. Only the sockets are missing (the same system calls for both kinds).

Rounds of one small batch of each kind (the order swapped every round), CONCURRENCY
keep-alive connections busy at once as under load; each batch's process CPU time (user +
system) is divided by its calls. The added CPU is the median over the rounds of DPoP's
per call minus bearer's: the two batches of a round see the same machine (other
processes on the core slow both), and a round that one burst hit weighs no more than
any other. That is all the DPoP path adds in the server (the longer request parsed,
the Authorization scheme, the DPoP header, the proof's signature and claims, `ath`, the
key against `cnf.jkt`, the jti reserved inside the rate-limit Lua call). Proofs are
signed before their batch is timed (fresh jti, iat of that moment) and rate-limit
windows reset between batches (never raised), so every answer is a 200: any other
fails the probe, and so does a replayed proof that is not refused at the end.

Input: a JSON file written by the harness (bench/harness/sync_scenarios.py) with the
world's employees, bearer tokens, DPoP-bound tokens and the DPoP key (PEM).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bench.harness.proofs import EcKey

BATCH = 100  # small: both kinds of a round see the same machine
# Connections busy at once: the load generator's 32 (an experiment may set fewer; then
# fewer reads share the data-access log's Redis call, shared/data_access.py).
CONCURRENCY = int(os.environ.get("BENCH_DPOP_CONCURRENCY", "32"))
WARM_UP_ROUNDS = 10
ANSWER_TIMEOUT_S = 10.0


class Refused(RuntimeError):
    """An answer other than 200: the probe measured something else than a read."""


def write_input(path: Path, employees: list[str], bearer: list[str], bound: list[str],
                key: EcKey) -> None:
    """The probe's input, from the harness's world and DPoP key."""
    pem = key.private.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    path.write_text(json.dumps({"employees": employees, "bearer": bearer, "dpop": bound,
                                "key": pem}))


class Connection:
    """One keep-alive HTTP/1.1 connection into uvicorn's own protocol (httptools), set up
    as `koppel serve` sets it up, over an in-memory transport: each request's bytes are
    parsed, the ASGI app runs, the answer is serialised. Only the socket is missing.
    The connection is its own transport."""

    def __init__(self, config: Any, state: Any, server: tuple[str, int], port: int) -> None:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        self.peer, self.sock = ("127.0.0.1", port), server
        self.written = bytearray()
        self.closing = False
        self._done: asyncio.Future[None] | None = None
        self.protocol = HttpToolsProtocol(config, state, {}, _loop=asyncio.get_running_loop())
        completed = self.protocol.on_response_complete

        def on_response_complete() -> None:  # the cycle calls it once the answer is sent
            completed()
            if self._done is not None and not self._done.done():
                self._done.set_result(None)

        self.protocol.on_response_complete = on_response_complete  # type: ignore[method-assign]
        self.protocol.connection_made(self)  # type: ignore[arg-type]

    # The transport's side, as uvicorn uses it.
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": self.sock, "peername": self.peer}.get(name, default)

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    async def request(self, raw: bytes) -> bytes:
        """The answer's bytes to the request `raw`."""
        if self.closing:
            raise Refused("the server closed the connection")
        self.written.clear()
        self._done = asyncio.get_running_loop().create_future()
        self.protocol.data_received(raw)
        try:
            await asyncio.wait_for(self._done, ANSWER_TIMEOUT_S)
        except TimeoutError:
            raise Refused(f"no complete answer within {ANSWER_TIMEOUT_S} s: "
                          f"{bytes(self.written[:300])!r}") from None
        return bytes(self.written)

    def close_connection(self) -> None:
        self.protocol.connection_lost(None)


class Caller:
    """CONCURRENCY connections into the app under uvicorn's protocol; counts answers other
    than 200."""

    def __init__(self, app: Any, public_url: str) -> None:
        import uvicorn
        from uvicorn.server import ServerState

        parts = urlsplit(public_url)
        self.host = parts.netloc
        self.server = (parts.hostname or "127.0.0.1", parts.port or 80)
        # `koppel serve`'s settings (cli/serve.py); the lifespan is the probe's own.
        self.config = uvicorn.Config(app, http="httptools", lifespan="off", proxy_headers=False,
                                     server_header=False, log_level="warning")
        self.config.load()
        self.state = ServerState()
        self.state.default_headers = [(b"date", formatdate(usegmt=True).encode()),
                                      *self.config.encoded_headers]
        self.connections: list[Connection] = []
        self.failures = 0
        self.first_failure = ""

    def open(self) -> None:
        self.connections = [Connection(self.config, self.state, self.server, 40000 + i)
                            for i in range(CONCURRENCY)]

    def close(self) -> None:
        for connection in self.connections:
            connection.close_connection()

    def request(self, path: str, authorization: str, proof: str | None = None) -> bytes:
        """The bytes of a GET as the load generator (aiohttp) sends it."""
        lines = [f"GET {path} HTTP/1.1", f"Host: {self.host}", f"Authorization: {authorization}"]
        if proof is not None:
            lines.append(f"DPoP: {proof}")
        lines += ["Accept: */*", "Accept-Encoding: gzip, deflate",
                  "User-Agent: Python/3.11 aiohttp/3", "", ""]
        return "\r\n".join(lines).encode()

    async def get(self, connection: Connection, raw: bytes) -> None:
        answer = await connection.request(raw)
        if not answer.startswith(b"HTTP/1.1 200 "):
            self.failures += 1
            if not self.first_failure:
                self.first_failure = answer[:400].decode(errors="replace")

    async def batch(self, calls: list[bytes]) -> float:
        """CPU seconds of this process for `calls`, one connection per CONCURRENCY."""
        pending = list(reversed(calls))

        async def worker(connection: Connection) -> None:
            while pending:
                await self.get(connection, pending.pop())

        cpu = time.process_time()
        await asyncio.gather(*(worker(c) for c in self.connections))
        return time.process_time() - cpu


async def _reset_limits(redis: Any) -> None:
    """Rate-limit windows start afresh (untimed), as the harness does between runs."""
    keys = [key async for key in redis.scan_iter(match="koppel:rl:*", count=1000)]
    if keys:
        await redis.delete(*keys)


async def dpop(seconds: float, input_path: str) -> dict[str, float]:
    """CPU microseconds per call of bearer and DPoP reads through the sync app, and
    the difference (`added_us`)."""
    from cli.serve import Service, built_app

    data = json.loads(Path(input_path).read_text())
    private = serialization.load_pem_private_key(data["key"].encode(), password=None)
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise SystemExit("the DPoP key is not an EC key")
    key = EcKey(private=private)
    app: Any = built_app(Service.SYNC)  # as `koppel serve` builds it (start-up frozen)
    paths = [f"/v1/employees/{e}" for e in data["employees"]]
    bearer, bound = data["bearer"], data["dpop"]
    base = app.state.public_url.rstrip("/")
    caller = Caller(app, base)  # uvicorn's logging set up before the app's, as when served
    async with app.router.lifespan_context(app):
        redis = app.state.runtime.redis
        caller.open()
        plain = [caller.request(paths[n % len(paths)], f"Bearer {bearer[n % len(bearer)]}")
                 for n in range(BATCH)]

        def proofs() -> list[bytes]:
            now = int(time.time())
            out = []
            for n in range(BATCH):
                path, token = paths[n % len(paths)], bound[n % len(bound)]
                out.append(caller.request(path, f"DPoP {token}",
                                          key.dpop_proof("GET", base + path, token, now)))
            return out

        spent = {"bearer": 0.0, "dpop": 0.0}
        added: list[float] = []  # per round: DPoP's CPU per call minus bearer's
        rounds = 0
        stop = None
        while stop is None or time.perf_counter() < stop:
            signed = proofs()
            timed = {}
            for kind in (("bearer", "dpop") if rounds % 2 == 0 else ("dpop", "bearer")):
                await _reset_limits(redis)
                timed[kind] = await caller.batch(plain if kind == "bearer" else signed)
            if caller.failures:
                raise Refused(f"{caller.failures} calls not answered 200; the first: "
                              f"{caller.first_failure}")
            rounds += 1
            if rounds == WARM_UP_ROUNDS:  # keys, statements and caches loaded
                stop = time.perf_counter() + seconds
            elif rounds > WARM_UP_ROUNDS:
                for kind, cpu in timed.items():
                    spent[kind] += cpu
                added.append((timed["dpop"] - timed["bearer"]) / BATCH * 1e6)
        # The reads measured went through the proof check: a replayed proof is refused.
        await _reset_limits(redis)
        await caller.get(caller.connections[0], signed[0])
        if caller.failures != 1 or not caller.first_failure.startswith("HTTP/1.1 401 "):
            raise Refused(f"a replayed proof was not refused: {caller.first_failure!r}")
        caller.close()
        check_us = _check_alone(app.state.dpop_checker, key, base + paths[0], bound[0])
    calls = len(added) * BATCH
    per_call = {kind: cpu / calls * 1e6 for kind, cpu in spent.items()}
    return {"added_us": statistics.median(added), "bearer_us": per_call["bearer"],
            "dpop_us": per_call["dpop"], "added_mean_us": per_call["dpop"] - per_call["bearer"],
            "rounds": float(len(added)), "calls": float(calls), "check_us": check_us}


def _check_alone(checker: Any, key: EcKey, url: str, token: str) -> float:
    """CPU microseconds of the app's ProofChecker.check alone (signature and claims, the
    key cached as in the reads), for comparison with the added CPU."""
    proofs = [key.dpop_proof("GET", url, token) for _ in range(BATCH)]
    start = time.process_time()
    for proof in proofs:
        checker.check(proof, method="GET", url=url, access_token=token)
    return (time.process_time() - start) / len(proofs) * 1e6
