"""The aiohttp load generator: closed loop (N concurrent clients, as fast as the server
answers) and open loop (a fixed request rate, latency from each request's due time)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

# A request: takes the session, returns the HTTP status (after reading the body).
Request = Callable[[aiohttp.ClientSession], Awaitable[int]]
OK = frozenset({200, 201, 204, 302, 303})


class Exhausted(Exception):
    """A request factory ran out of single-use inputs (codes, refresh tokens)."""


@dataclass
class Outcome:
    done: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    client_cpu: float = 0.0  # CPU-seconds this (load generator) process spent

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    def count(self, status: int, ok: frozenset[int]) -> None:
        if status in ok:
            self.done += 1
        else:
            self.errors += 1
            self.statuses[status] = self.statuses.get(status, 0) + 1


async def closed_loop(request: Request, seconds: float, concurrency: int = 32,
                      ok: frozenset[int] = OK) -> Outcome:
    """`concurrency` clients each send the next request when the last one is answered."""
    out = Outcome()
    stop = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as http:
        async def client() -> None:
            while time.perf_counter() < stop:
                try:
                    status = await request(http)
                except Exhausted:
                    return
                except aiohttp.ClientError:
                    status = 0
                out.count(status, ok)
        start, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        out.seconds = time.perf_counter() - start
        out.client_cpu = time.process_time() - cpu
    return out


async def open_loop(request: Request, rate: float, seconds: float, limit: int = 512,
                    ok: frozenset[int] = OK) -> tuple[Outcome, float]:
    """`rate` requests per second for `seconds`, each timed from when it was due (so a
    server that falls behind shows it in the latencies); also returns how far, at most,
    the sender itself fell behind (ms)."""
    out = Outcome()
    total = int(rate * seconds)
    late = 0.0
    connector = aiohttp.TCPConnector(limit=limit)
    async with aiohttp.ClientSession(connector=connector) as http:
        async def one(due: float) -> None:
            try:
                status = await request(http)
            except aiohttp.ClientError:
                status = 0
            out.latencies_ms.append((time.perf_counter() - due) * 1000)
            out.count(status, ok)

        tasks = []
        began = time.perf_counter()
        for i in range(total):
            due = began + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                late = max(late, -delay)
            tasks.append(asyncio.create_task(one(due)))
        await asyncio.gather(*tasks)
        out.seconds = time.perf_counter() - began
    return out, late * 1000
