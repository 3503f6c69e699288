"""The raw signed send: aiohttp posting Standard Webhooks-signed bodies (HMAC-SHA256 over
id, timestamp and body, fresh per message) to a local receiver, with no database,
queue or checks. Run in its own process, pinned to the worker's core by the harness:

    python -m bench.harness.signed_send URL SECONDS CONCURRENCY

Prints one JSON line: {"sent": N, "seconds": S, "rate": N/S}.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import sys
import time

import aiohttp

SECRET = secrets.token_bytes(32)


def sign(msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(SECRET, signed, hashlib.sha256).digest()).decode()


def body_for(n: int) -> bytes:
    """About the size of Koppel's employee.updated event."""
    return json.dumps({
        "type": "employee.updated", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": {"environment_id": "01a20f17-8bbd-7171-b009-8b970433c07e",
                 "debtor_id": "01a20f17-8bd4-727c-8145-91875518aa82",
                 "company_id": "01a20f17-8d1e-7244-918f-895384ac4365",
                 "employee_id": "01a20f17-a05e-72cd-b088-706f5d7006ef",
                 "changed_fields": ["last_name"], "n": n}}).encode()


async def send(url: str, seconds: float, concurrency: int) -> dict[str, float]:
    sent = failed = 0
    counter = 0
    stop = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:
        async def loop() -> None:
            nonlocal sent, failed, counter
            while time.perf_counter() < stop:
                counter += 1
                msg_id = f"bench_{counter}"
                timestamp = int(time.time())
                body = body_for(counter)
                headers = {"content-type": "application/json", "webhook-id": msg_id,
                           "webhook-timestamp": str(timestamp),
                           "webhook-signature": sign(msg_id, timestamp, body)}
                async with http.post(url, data=body, headers=headers) as r:
                    await r.read()
                    if r.status < 300:
                        sent += 1
                    else:
                        failed += 1
        start = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return {"sent": sent, "failed": failed, "seconds": elapsed, "rate": sent / elapsed}


def main() -> None:
    url, seconds, concurrency = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    print(json.dumps(asyncio.run(send(url, seconds, concurrency))))


if __name__ == "__main__":
    main()
