"""References measured in the same run: the framework ceiling (bare FastAPI), the
cryptographic ceilings (argon2id, ES256) on one core, the peer authorization server
(oidc-provider) and the raw signed send."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess

from bench.harness import repeat
from bench.harness.common import PYTHON, ROOT, Figure, say
from bench.harness.context import PORTS, Ctx, url
from bench.harness.procs import SERVER_CORE, Proc, can_pin

PEER_DIR = ROOT / "bench" / "peers" / "oidc-provider"
PEER_CLIENT = ("bench-peer", "bench-peer-secret-0123456789abcdef")


def _pinned():
    return (lambda: os.sched_setaffinity(0, {SERVER_CORE})) if can_pin() else None


def probe(kind: str, seconds: float, env: dict[str, str] | None = None,
          *args: str) -> dict[str, float]:
    """One run of bench/harness/cpu_probe.py in its own process on the server core."""
    out = subprocess.run([PYTHON, "-m", "bench.harness.cpu_probe", kind, str(seconds), *args],
                         env=env or os.environ.copy(), cwd=ROOT, capture_output=True,
                         text=True, check=False, preexec_fn=_pinned())
    if out.returncode != 0:
        raise RuntimeError(f"cpu probe {kind} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def argon2(ctx: Ctx) -> Figure:
    figure = ctx.figure("ref_argon2", "/s")
    if not figure.runs:
        probe("argon2", 1)  # warm-up
        for _ in range(ctx.runs):
            figure.runs.append(probe("argon2", max(3.0, ctx.seconds / 2))["argon2"])
        say(f"  argon2id ceiling: {figure.median:.1f}/s")
    return figure


async def bare_fastapi(ctx: Ctx) -> Figure:
    """Requests/s of the bare FastAPI endpoint, same load as the reads scenario."""
    if "ref_bare" in ctx.figures:
        return ctx.figures["ref_bare"]
    proc = Proc("bare", [PYTHON, "-m", "bench.harness.bare_app", str(PORTS["bare"])],
                os.environ.copy(), ctx.log_dir, cwd=ROOT)
    try:
        proc.wait_http(f"{url('bare')}/healthz")
        target = f"{url('bare')}/v1/employees/01a20f17-a05e-72cd-b088-706f5d7006ef"

        async def request(http):
            async with http.get(target) as r:
                await r.read()
                return r.status

        return await repeat.rates(ctx, "ref_bare", request, server=proc)
    finally:
        proc.stop()


def ensure_peer_installed() -> None:
    if (PEER_DIR / "node_modules" / "oidc-provider").is_dir():
        return
    if shutil.which("npm") is None:
        raise RuntimeError("npm is needed for the oidc-provider peer (bench/peers/oidc-provider)")
    say("installing the oidc-provider peer (npm ci)")
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=PEER_DIR, check=True,
                   stdout=subprocess.DEVNULL)


async def oidc_provider(ctx: Ctx) -> Figure:
    """Client-credentials grants/s of oidc-provider (ES256 JWT access tokens) on one core."""
    if "ref_peer_cc" in ctx.figures:
        return ctx.figures["ref_peer_cc"]
    ensure_peer_installed()
    proc = Proc("oidc-provider", ["node", "server.js", str(PORTS["peer"]), *PEER_CLIENT],
                {**os.environ, "NODE_ENV": "production"}, ctx.log_dir, cwd=PEER_DIR)
    try:
        proc.wait_http(f"{url('peer')}/.well-known/openid-configuration")
        import aiohttp

        auth = aiohttp.BasicAuth(*PEER_CLIENT)
        target = f"{url('peer')}/token"

        async def request(http):
            async with http.post(target, auth=auth, data={
                    "grant_type": "client_credentials", "scope": "webhooks.manage"}) as r:
                await r.read()
                return r.status

        return await repeat.rates(ctx, "ref_peer_cc", request, server=proc)
    finally:
        proc.stop()


async def signed_send(ctx: Ctx, receiver_url: str) -> Figure:
    """Raw Standard Webhooks-signed posts/s to the delivery receiver, one sender process
    on the worker's core."""
    figure = ctx.figure("ref_signed_send", "/s")
    for i in range(ctx.runs + 1):
        proc = await asyncio.create_subprocess_exec(
            PYTHON, "-m", "bench.harness.signed_send", receiver_url,
            str(repeat.WARM_UP_S if i == 0 else ctx.seconds), "64", cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, preexec_fn=_pinned())
        stdout, _ = await proc.communicate()
        if i:  # the first is the warm-up
            figure.runs.append(json.loads(stdout.decode().strip().splitlines()[-1])["rate"])
    say(f"  raw signed send: {figure.median:,.0f}/s")
    return figure
