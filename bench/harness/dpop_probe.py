"""The DPoP check's added server CPU per call (issue 15), measured in-process: the real sync
app (`services.sync.app:create_app`, its lifespan, every middleware, the direct employee
read) called through ASGI for the same employee reads with bearer tokens and with
DPoP-bound tokens and a fresh proof each, in one process pinned to the server core.

Batches of each kind are taken in turn (the order swapped every round), CONCURRENCY calls
in flight as under load; each batch's process CPU time (user + system) is divided by its
calls. The added CPU is DPoP's per call minus bearer's: all the DPoP path adds in the
app (the Authorization scheme, the DPoP header, the proof's signature and claims, `ath`,
the key against `cnf.jkt`, the jti reserved inside the rate-limit Lua call). Proofs are
signed before their batch is timed (fresh jti, iat of that moment) and rate-limit
windows reset between batches (never raised), so every answer is a 200: any other fails
the probe. Not included: uvicorn's parsing of the longer request (httptools, in C).

Input: a JSON file written by the harness (bench/harness/sync_scenarios.py) with the
world's employees, bearer tokens, DPoP-bound tokens and the DPoP key (PEM).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bench.harness.proofs import EcKey

BATCH = 400
CONCURRENCY = 32
WARM_UP_ROUNDS = 3
Headers = list[tuple[bytes, bytes]]


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


class Caller:
    """GET requests straight into an ASGI app, as uvicorn hands them over (one HTTP/1.1
    request per scope, the body already read, disconnect once the answer is sent)."""

    def __init__(self, app: Any, public_url: str) -> None:
        self.app = app
        parts = urlsplit(public_url)
        self.host = parts.netloc.encode()
        self.server = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.failures = 0
        self.first_failure = ""

    def headers(self, authorization: str, proof: str | None = None) -> Headers:
        """What the load generator (aiohttp) sends, with the credentials."""
        out = [(b"host", self.host), (b"user-agent", b"Python/3.11 aiohttp/3"),
               (b"accept", b"*/*"), (b"accept-encoding", b"gzip, deflate"),
               (b"authorization", authorization.encode())]
        if proof is not None:
            out.append((b"dpop", proof.encode()))
        return out

    async def get(self, path: str, headers: Headers) -> None:
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
                 "http_version": "1.1", "server": self.server, "client": ("127.0.0.1", 50000),
                 "scheme": "http", "method": "GET", "root_path": "", "path": path,
                 "raw_path": path.encode(), "query_string": b"", "headers": headers,
                 "state": {}}
        done = asyncio.Event()
        answer: dict[str, Any] = {"body": []}
        read = False

        async def receive() -> dict[str, Any]:
            nonlocal read
            if not read:
                read = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            elif message["type"] == "http.response.body":
                answer["body"].append(message.get("body", b""))
                if not message.get("more_body", False):
                    done.set()

        await self.app(scope, receive, send)
        if answer.get("status") != 200:
            self.failures += 1
            if not self.first_failure:
                body = b"".join(answer["body"])[:300].decode(errors="replace")
                self.first_failure = f"{answer.get('status')} {body}"

    async def batch(self, calls: list[tuple[str, Headers]]) -> float:
        """CPU seconds of this process for `calls`, CONCURRENCY in flight."""
        pending = list(reversed(calls))

        async def worker() -> None:
            while pending:
                path, headers = pending.pop()
                await self.get(path, headers)

        cpu = time.process_time()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return time.process_time() - cpu


async def _reset_limits(redis: Any) -> None:
    """Rate-limit windows start afresh (untimed), as the harness does between runs."""
    keys = [key async for key in redis.scan_iter(match="koppel:rl:*", count=1000)]
    if keys:
        await redis.delete(*keys)


async def dpop(seconds: float, input_path: str) -> dict[str, float]:
    """CPU microseconds per call of bearer and DPoP reads through the sync app, and
    the difference (`added_us`)."""
    from services.sync.app import create_app
    from shared.config import Settings

    data = json.loads(Path(input_path).read_text())
    private = serialization.load_pem_private_key(data["key"].encode(), password=None)
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise SystemExit("the DPoP key is not an EC key")
    key = EcKey(private=private)
    app = create_app(Settings())
    paths = [f"/v1/employees/{e}" for e in data["employees"]]
    bearer, bound = data["bearer"], data["dpop"]
    async with app.router.lifespan_context(app):
        redis = app.state.runtime.redis
        base = app.state.public_url.rstrip("/")
        caller = Caller(app, base)
        plain = [(paths[n % len(paths)], caller.headers(f"Bearer {bearer[n % len(bearer)]}"))
                 for n in range(BATCH)]

        def proofs() -> list[tuple[str, Headers]]:
            now = int(time.time())
            out = []
            for n in range(BATCH):
                path, token = paths[n % len(paths)], bound[n % len(bound)]
                out.append((path, caller.headers(
                    f"DPoP {token}", key.dpop_proof("GET", base + path, token, now))))
            return out

        spent = {"bearer": 0.0, "dpop": 0.0}
        calls = 0
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
                calls += BATCH
        # The reads measured went through the proof check: a replayed proof is refused.
        await _reset_limits(redis)
        await caller.get(*signed[0])
        if caller.failures != 1 or not caller.first_failure.startswith("401"):
            raise Refused(f"a replayed proof was not refused: {caller.first_failure!r}")
    per_call = {kind: cpu / calls * 1e6 for kind, cpu in spent.items()}
    return {"bearer_us": per_call["bearer"], "dpop_us": per_call["dpop"],
            "added_us": per_call["dpop"] - per_call["bearer"], "calls": float(calls)}
