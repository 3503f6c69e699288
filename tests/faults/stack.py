"""Koppel as it runs, on loopback, ready to be broken: a database of its own (migrated and
seeded), a private `redis-server`, `koppel serve` and `koppel worker` child processes that
the test starts (each pointed at the real server or at a proxy in front of it), and a
webhook receiver.

What a scenario counts: the events written (the outbox rows, read from the database)
and the events delivered (the distinct `webhook-id`s the receiver answered 2xx to).
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, col, select

from shared.config import Settings
from shared.models import App, Connection, Event, UserTemplate
from shared.signing import Signer
from shared.vault import KeyRing, SecretBox
from tests.faults.redis_server import RedisServer
from tests.fixtures import factories as f
from tests.fixtures.auth_server import Client, new_client
from tests.multi_instance.cluster import (
    Process,
    ThreadedReceiver,
    child_env,
    free_ports,
    koppel,
    serve,
    wait_ready,
    wait_until,
)
from tests.services.auth.support import User
from tests.services.sync.conftest import Tokens

APP_SCOPES = ("employee.info", "webhooks.manage", "offline_access", "openid")
WORKER_READY_S = 45.0


@dataclass
class Seed:
    """What the stack's database holds: one debtor and company with employees, an HR
    manager who can log in, a third-party app (secret known) with one connection per
    extra user."""

    environment_id: uuid.UUID
    company_id: uuid.UUID
    employees: list[uuid.UUID]
    user: User
    client: Client
    app: App
    connections: list[Connection]
    owners: list[User]  # who made each connection


def seed(sessions: sessionmaker[Session], keyring: KeyRing, *, employees: int = 3,
         connections: int = 3) -> Seed:
    with sessions() as session, session.begin():
        env = f.make_environment(session)
        debtor = f.make_debtor(session, env)
        company = f.make_company(session, debtor)
        staff = [f.make_employee(session, company).id for _ in range(employees)]
        manager = f.make_user(session, env, template=UserTemplate.HR_MANAGER,
                              companies=[company])
        client = new_client(session, keyring, scopes=APP_SCOPES, name="Fault App")
        app = session.exec(select(App).where(App.client_id == client.client_id)).one()
        owners = [f.make_user(session, env, companies=[company]) for _ in range(connections)]
        links = [f.make_connection(session, owner, app, companies=[company],
                                   scopes=["employee.info"]) for owner in owners]
    return Seed(env.id, company.id, staff, _user(manager), client, app, links,
                [_user(owner) for owner in owners])


def _user(row) -> User:
    return User(str(row.id), row.email, f.DEFAULT_PASSWORD, str(row.template))


@dataclass
class Stack:
    """The database, Redis and receiver of one scenario, and the processes it started."""

    settings: Settings
    base_env: dict[str, str]
    database_url: str
    redis: RedisServer
    sessions: sessionmaker[Session]
    keyring: KeyRing
    seed: Seed
    receiver: ThreadedReceiver
    logs: Path
    processes: list[Process] = field(default_factory=list)

    @property
    def redis_url(self) -> str:
        return self.redis.url

    # ---- processes --------------------------------------------------------------------

    def env(self, *, database_url: str | None = None, redis_url: str | None = None,
            **extra: str) -> dict[str, str]:
        """The environment of a child: this stack's database and Redis unless given."""
        return child_env({
            **self.base_env,
            "KOPPEL_DATABASE_URL": database_url or self.database_url,
            "KOPPEL_REDIS_URL": redis_url or self.redis_url,
            "KOPPEL_ISSUER": self.settings.issuer,
            "KOPPEL_LOG_LEVEL": "info",
            "KOPPEL_LOG_JSON": "true",
            **extra,
        })

    def serve(self, service: str, *, name: str | None = None, **env: str) -> Process:
        """Start `koppel serve SERVICE` on a free port; returns once it is ready."""
        [process] = self.start(service, name=name, **env)
        return process

    def worker(self, *, name: str = "worker", **env: str) -> Process:
        """Start `koppel worker`; returns once arq has started."""
        [process] = self.start(worker=name, **env)
        return process

    def start(self, *services: str, worker: str | None = None, name: str | None = None,
              **env: str) -> list[Process]:
        """Start services (and a worker) at once, all with the same environment; returns
        them, in that order, once every one is ready."""
        child = self.env(**env)
        started = [serve(name or service, service, port, child, self.logs)
                   for service, port in zip(services, free_ports(len(services)), strict=True)]
        if worker is not None:
            started.append(koppel(worker, ["worker"], child, self.logs))
        self.processes.extend(started)
        wait_ready(started)
        for process in started:
            if process.url is None:
                wait_until(lambda p=process: "Starting worker" in p.log_text()
                           or p.popen.poll() is not None, WORKER_READY_S,
                           f"{process.name} starts")
                assert process.popen.poll() is None, process.log_text()[-3000:]
        return started

    def cli(self, *args: str, **env: str) -> str:
        """Run `koppel ARGS` to the end; its output."""
        process = koppel(f"cli-{args[0]}", list(args), self.env(**env), self.logs)
        process.popen.wait(60)
        assert process.popen.returncode == 0, process.log_text()[-3000:]
        return process.log_text()

    @staticmethod
    def kill(process: Process) -> None:
        """SIGKILL: no shutdown, no clean-up."""
        process.popen.send_signal(signal.SIGKILL)
        process.popen.wait(10)

    def stop(self) -> None:
        """SIGKILL whatever still runs: nothing is checked after a scenario, and a
        graceful stop would wait for the slow receiver."""
        for process in self.processes:
            if process.popen.poll() is None:
                self.kill(process)

    def assert_no_internal_errors(self) -> None:
        """No service answered 500 or logged an unhandled exception."""
        for process in self.processes:
            if process.url is None:
                continue
            text = process.log_text()
            for sign in ("unhandled error", "Exception in ASGI", 'HTTP/1.1\\" 500'):
                assert sign not in text, f"{process.name}: {sign}\n{text[-3000:]}"

    def log_tails(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log_text()[-2500:]}" for p in self.processes)

    # ---- calls ------------------------------------------------------------------------

    def tokens(self) -> Tokens:
        return Tokens(self.sessions, Signer(SecretBox(self.keyring)), self.settings)

    def connection_headers(self, index: int = 0) -> dict[str, str]:
        return self.tokens().connection(self.seed.connections[index], self.seed.app)

    def app_headers(self) -> dict[str, str]:
        return self.tokens().app(self.seed.app, "webhooks.manage")

    def subscribe(self, sync_url: str, events: list[str]) -> dict:
        response = httpx.post(f"{sync_url}/v1/webhooks", headers=self.app_headers(),
                              json={"url": self.receiver.url(), "events": events}, timeout=30)
        assert response.status_code == 201, response.text
        return response.json()

    # ---- counting ---------------------------------------------------------------------

    def written(self, type_prefix: str = "") -> set[str]:
        """The webhook-ids the events written so far must arrive under."""
        with self.sessions() as session:
            ids = session.exec(select(Event.id).where(
                col(Event.type).startswith(type_prefix))).all()
        return {f"msg_{event_id.hex}" for event_id in ids}

    def delivered(self) -> set[str]:
        """The webhook-ids the receiver has answered (2xx) so far."""
        return {r.headers["webhook-id"] for r in list(self.receiver.answered)}

    def wait_delivered(self, expected: set[str], timeout: float, what: str) -> None:
        """Until every id in `expected` has been delivered; fails with the logs after
        `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not self.delivered() >= expected:
            if time.monotonic() > deadline:
                got = len(self.delivered() & expected)
                raise AssertionError(
                    f"{what}: {got} of {len(expected)} delivered within {timeout} s "
                    f"({len(self.receiver.requests)} requests received)\n{self.log_tails()}")
            time.sleep(0.1)

    def wait(self, check: Callable[[], object], timeout: float, what: str) -> None:
        """Until `check()` is truthy; fails with the processes' logs after `timeout` s."""
        try:
            wait_until(check, timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log_tails()}") from None

    def employee(self, index: int = 0) -> uuid.UUID:
        return self.seed.employees[index]

    def database_calls(self, urls: dict[str, str], tag: str, timeout: float = 30.0,
                       ) -> dict[str, Callable[[], httpx.Response]]:
        """One read or write per service, each needing the database. (Not a client
        credentials grant: the auth service keeps its clients' rows, so a grant of a
        known client may be answered without the database.) `answered` says whether an
        answer is the normal one."""
        client = self.seed.client
        connection = self.connection_headers()
        app = self.app_headers()
        employee = self.employee()
        return {
            # Only the database knows a refresh token: answered invalid_grant when it is up.
            "auth refresh": lambda: httpx.post(
                f"{urls['auth']}/token", auth=(client.client_id, client.secret),
                data={"grant_type": "refresh_token", "refresh_token": "never-issued"},
                timeout=timeout),
            "registry list": lambda: httpx.get(
                f"{urls['registry']}/v1/app/connections", headers=app, timeout=timeout),
            "sync read": lambda: httpx.get(
                f"{urls['sync']}/v1/employees/{employee}", headers=connection, timeout=timeout),
            "sync write": lambda: httpx.patch(
                f"{urls['sync']}/v1/employees/{employee}", headers=connection,
                json={"last_name": f"{tag}-{time.monotonic_ns()}"}, timeout=timeout),
        }


def answered(name: str, response: httpx.Response) -> bool:
    """Whether a call of `database_calls` got its normal answer (the database up)."""
    if name == "auth refresh":
        return response.status_code == 400 and response.json()["error"] == "invalid_grant"
    return response.status_code in (200, 201)


def timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    """The response and how long it took, in seconds."""
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def assert_problem_503(response: httpx.Response, took: float, what: str, prompt: float,
                       ) -> None:
    """A 503 problem+json with Retry-After, answered within `prompt` seconds."""
    assert response.status_code == 503, (what, response.status_code, response.text[:300])
    assert response.headers["content-type"] == "application/problem+json", what
    assert response.headers.get("retry-after"), what
    assert took < prompt, (what, took)
