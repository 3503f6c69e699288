"""The soak (issue 7 item 6): minutes of mixed traffic against the auth and sync services
and the worker: browser logins and consents (the real pages and forms), code exchanges,
refreshes, API reads and writes, and the webhooks those writes cause, delivered to a
local receiver. Every 30 s a line with the counts, the errors and each process's RSS."""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import aiohttp

from bench.harness.common import KOPPEL, say
from bench.harness.context import Ctx, url
from bench.harness.procs import Proc
from bench.harness.world import PASSWORD, REDIRECT, World
from bench.sync_bench import Receiver
from tests.fixtures import factories as f
from tests.services.auth.support import Pkce, parse_page

USERS = 8
ROUNDS_PER_LOGIN = 30  # API rounds (3 reads, 1 write) before the user logs in again
REFRESH_EVERY = 5  # rounds
PAUSE_S = 0.25  # between a user's requests: stays inside the per-connection rate limit
SAMPLE_EVERY_S = 30
SCOPE = "employee.info offline_access"


@dataclass
class Tally:
    counts: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    def ok(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def fail(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def soak_app(world: World) -> tuple[str, str, list[str]]:
    """A partner app for the browser flow, and USERS company-level users who may consent."""
    from shared.vault import TokenKind, new_token, token_digest

    secret = new_token(TokenKind.CLIENT_SECRET)
    with world.sessions() as session, session.begin():
        from shared.models import Company, Environment

        app = f.make_app(session, redirect_uris=[REDIRECT],
                         scopes=["employee.info", "employee.info.read", "offline_access"],
                         client_secret_digest=token_digest(world.keyring.digest_key, secret),
                         token_endpoint_auth_method="client_secret_basic")
        companies = [session.get(Company, c.id) for c in world.companies]
        environment = session.get(Environment, world.env_id)
        emails = [f.make_user(session, environment, companies=companies, password=PASSWORD,
                              email=f"soak-{i}-{secrets.token_hex(3)}@bench.koppel.test").email
                  for i in range(USERS)]
        client_id = app.client_id
    return client_id, secret, emails


class Flow:
    """One browser and its partner app: log in, consent, exchange, then use the tokens."""

    def __init__(self, client_id: str, secret: str, email: str, employees: list[str],
                 tally: Tally) -> None:
        self.client_id, self.email, self.employees, self.tally = client_id, email, employees, tally
        self.basic = aiohttp.BasicAuth(client_id, secret)
        self.access = self.refresh_token = ""

    async def _step(self, http: aiohttp.ClientSession, response: aiohttp.ClientResponse
                    ) -> str | None:
        """Walk login and consent pages until the redirect to the app; the code."""
        for _ in range(8):
            location = response.headers.get("Location", "")
            if response.status in (302, 303) and location.startswith(REDIRECT):
                query = parse_qs(urlsplit(location).query)
                return query.get("code", [None])[0]
            if response.status in (302, 303):
                response = await http.get(f"{url('auth')}{location}", allow_redirects=False)
                continue
            if response.status != 200:
                self.tally.fail(f"page {response.status}")
                return None
            page = parse_page(await response.text())
            if not page.forms:
                self.tally.fail("page without a form")
                return None
            form = page.forms[0]
            data = [(k, v) for k, v in form.fields if k not in ("username", "password")]
            if form.action == "/login":
                data += [("username", self.email), ("password", PASSWORD)]
                self.tally.ok("logins")
            else:
                data.append(("decision", "allow"))
                self.tally.ok("consents")
            response = await http.post(f"{url('auth')}{form.action}", data=data,
                                       allow_redirects=False)
        self.tally.fail("too many steps")
        return None

    async def link(self) -> bool:
        pkce = Pkce.new()
        params = {"response_type": "code", "client_id": self.client_id,
                  "redirect_uri": REDIRECT, "scope": SCOPE, "state": secrets.token_urlsafe(8),
                  "code_challenge": pkce.challenge, "code_challenge_method": "S256"}
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            first = await http.get(f"{url('auth')}/authorize", params=params,
                                   allow_redirects=False)
            code = await self._step(http, first)
            if code is None:
                return False
            async with http.post(f"{url('auth')}/token", auth=self.basic, data={
                    "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                    "code_verifier": pkce.verifier}) as r:
                body = await r.json(content_type=None)
                if r.status != 200:
                    self.tally.fail(f"code exchange {r.status}")
                    return False
        self.tally.ok("code exchanges")
        self.access, self.refresh_token = body["access_token"], body["refresh_token"]
        return True

    async def refresh(self, http: aiohttp.ClientSession) -> None:
        async with http.post(f"{url('auth')}/token", auth=self.basic, data={
                "grant_type": "refresh_token", "refresh_token": self.refresh_token}) as r:
            body = await r.json(content_type=None)
            if r.status != 200:
                self.tally.fail(f"refresh {r.status}")
                return
        self.tally.ok("refreshes")
        self.access, self.refresh_token = body["access_token"], body["refresh_token"]

    async def api(self, http: aiohttp.ClientSession, n: int) -> None:
        employee = self.employees[n % len(self.employees)]
        headers = {"Authorization": f"Bearer {self.access}"}
        target = f"{url('sync')}/v1/employees/{employee}"
        for _ in range(3):
            async with http.get(target, headers=headers) as r:
                await r.read()
                self.tally.ok("reads") if r.status == 200 else self.tally.fail(f"read {r.status}")
            await asyncio.sleep(PAUSE_S)
        async with http.patch(target, headers=headers,
                              json={"last_name": f"Soak {secrets.token_hex(4)}"}) as r:
            await r.read()
            self.tally.ok("writes") if r.status == 200 else self.tally.fail(f"write {r.status}")
        await asyncio.sleep(PAUSE_S)

    async def loop(self, stop_at: float) -> None:
        n = 0
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < stop_at:
                try:
                    if not await self.link():
                        await asyncio.sleep(1)
                        continue
                    for round_ in range(ROUNDS_PER_LOGIN):
                        if time.monotonic() >= stop_at:
                            break
                        n += 1
                        await self.api(http, n)
                        if round_ % REFRESH_EVERY == REFRESH_EVERY - 1:
                            await self.refresh(http)
                except (TimeoutError, aiohttp.ClientError) as exc:
                    self.tally.fail(type(exc).__name__)
                    await asyncio.sleep(1)


async def _subscribe(client_id: str, secret: str, port: int) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url('auth')}/token", auth=aiohttp.BasicAuth(client_id, secret),
                             data={"grant_type": "client_credentials",
                                   "scope": "webhooks.manage"}) as r:
            token = (await r.json())["access_token"]
        async with http.post(f"{url('sync')}/v1/webhooks",
                             headers={"Authorization": f"Bearer {token}"},
                             json={"url": f"http://127.0.0.1:{port}/soak",
                                   "events": ["employee.updated"]}) as r:
            if r.status != 201:
                raise RuntimeError(f"soak webhook endpoint: {r.status} {await r.text()}")


def _row(elapsed: float, tally: Tally, received: int, procs: dict[str, Proc]) -> list[str]:
    c = tally.counts
    return [f"{elapsed:.0f}", *(str(c.get(k, 0)) for k in
            ("logins", "consents", "refreshes", "reads", "writes")), str(received),
            str(tally.error_count), *(f"{p.rss() / 1e6:.0f}" for p in procs.values())]


async def run(ctx: Ctx, world: World, env: dict[str, str], seconds: float) -> str:
    say(f"soak: {seconds:.0f} s of mixed traffic, {USERS} users")
    client_id, secret, emails = soak_app(world)
    employees = [str(e) for e in world.employees]
    procs = {"auth": ctx.serve("auth", env), "sync": ctx.serve("sync", env),
             "worker": Proc("worker", [KOPPEL, "worker"], env, ctx.log_dir)}
    receiver = Receiver()
    runner = await receiver.start()
    tally = Tally()
    header = ["s", "logins", "consents", "refreshes", "reads", "writes", "webhooks",
              "errors", *(f"RSS {name} MB" for name in procs)]
    samples: list[list[str]] = []
    peaks: dict[str, int] = {}
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    try:
        await _subscribe(client_id, secret, receiver.port)
        began = time.monotonic()
        stop_at = began + seconds
        flows = [asyncio.create_task(Flow(client_id, secret, email, employees, tally)
                                     .loop(stop_at)) for email in emails]
        samples.append(_row(0, tally, receiver.count, procs))
        say("  " + " | ".join(header))
        next_sample = began + SAMPLE_EVERY_S
        while not all(t.done() for t in flows):
            await asyncio.sleep(0.5)
            for name, proc in procs.items():
                peaks[name] = max(peaks.get(name, 0), proc.rss())
            if time.monotonic() >= next_sample:
                next_sample += SAMPLE_EVERY_S
                samples.append(_row(time.monotonic() - began, tally, receiver.count, procs))
                say("  " + " | ".join(samples[-1]))
        await asyncio.gather(*flows, return_exceptions=True)
        writes = tally.counts.get("writes", 0)
        deadline = time.monotonic() + 60
        while receiver.count < writes and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        samples.append(_row(time.monotonic() - began, tally, receiver.count, procs))
    finally:
        for proc in procs.values():
            proc.stop()
        await runner.cleanup()
    return report(started, seconds, header, samples, tally, receiver.count, peaks)


def report(started: str, seconds: float, header: list[str], samples: list[list[str]],
           tally: Tally, received: int, peaks: dict[str, int]) -> str:
    writes = tally.counts.get("writes", 0)
    lines = [
        "## Soak",
        "",
        f"`make bench SCENARIO=soak SOAK_SECONDS={seconds:.0f}`, {started}: {USERS} browser "
        f"users in a loop (log in, consent, exchange the code, then {ROUNDS_PER_LOGIN} rounds "
        f"of 3 reads and 1 write, refreshing every {REFRESH_EVERY} rounds); each write's "
        "webhook delivered to a local receiver by one worker. The last line is after the "
        "webhooks drained.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in samples),
        "",
        f"Errors: {tally.error_count}" + (f" ({tally.errors})" if tally.errors else "") + ". "
        f"Webhooks received: {received} for {writes} successful writes. Peak RSS (sampled "
        "every 0.5 s): " + ", ".join(f"{k} {v / 1e6:.0f} MB" for k, v in peaks.items()) + ".",
    ]
    return "\n".join(lines)
