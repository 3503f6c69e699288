"""Two instances of each service and two workers behind one (conceptual) load balancer:
sessions, tokens, revocations and webhook deliveries work whichever instance answers."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from sqlmodel import select
from standardwebhooks.webhooks import Webhook

from cli.demo import seed_demo
from shared.config import Settings
from shared.db.engine import create_sync_engine, sync_session_factory
from shared.models import Company, Employee, Environment, Event, UserTemplate
from shared.vault import KeyRing
from tests.fixtures.auth_server import CALLBACK, Client, new_client, own_redis
from tests.fixtures.database import fresh_database, migrate
from tests.fixtures.factories import DEFAULT_PASSWORD, make_user
from tests.multi_instance.cluster import (
    Process,
    ThreadedReceiver,
    child_env,
    free_ports,
    koppel,
    serve,
    stop,
    wait_ready,
    wait_until,
)
from tests.services.auth.support import AuthRequest, Browser, User

pytestmark = pytest.mark.postgres_only

BURST = 40
SCOPES = ("employee.info", "webhooks.manage", "offline_access", "openid")


@dataclass
class Cluster:
    urls: dict[str, str]
    processes: list[Process]
    sessions: object
    demo: dict
    client: Client
    user: User
    company_id: str

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log_text()[-2000:]}" for p in self.processes)


@pytest.fixture
def cluster(settings: Settings, subprocess_env: dict[str, str], keyring: KeyRing,
            tmp_path: Path) -> Iterator[Cluster]:
    with fresh_database(tmp_path) as database_url, own_redis(settings) as redis_url:
        migrate(database_url)
        engine = create_sync_engine(database_url)
        sessions = sync_session_factory(engine)
        try:
            with sessions() as session, session.begin():
                demo = seed_demo(session, keyring, "Scale", employees=1)
                client = new_client(session, keyring, scopes=SCOPES, name="Scale App")
                environment = session.get(Environment, uuid.UUID(demo["environment"]["id"]))
                company_id = demo["debtors"][0]["companies"][0]["id"]
                company = session.get(Company, uuid.UUID(company_id))
                row = make_user(session, environment, template=UserTemplate.HR_MANAGER,
                                companies=[company])
                user = User(str(row.id), row.email, DEFAULT_PASSWORD,
                            str(UserTemplate.HR_MANAGER))
            names = [f"{s}{i}" for s in ("auth", "registry", "sync") for i in (1, 2)]
            *service_ports, metrics1, metrics2 = free_ports(len(names) + 2)
            ports = dict(zip(names, service_ports, strict=True))
            urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
            metrics_ports = [metrics1, metrics2]
            for i, port in enumerate(metrics_ports, start=1):
                urls[f"worker{i}"] = f"http://127.0.0.1:{port}"
            env = child_env({
                **subprocess_env,
                "KOPPEL_DATABASE_URL": database_url,
                "KOPPEL_REDIS_URL": redis_url,
                # One issuer for both auth instances: they sit behind one load balancer.
                "KOPPEL_ISSUER": urls["auth1"],
                "KOPPEL_AUTH_URL": urls["auth1"],
                "KOPPEL_REGISTRY_URL": urls["registry1"],
                "KOPPEL_SYNC_URL": urls["sync1"],
                "KOPPEL_LOG_LEVEL": "info",
                "KOPPEL_LOG_JSON": "true",
            })
            processes = [
                serve(name, name[:-1], port, env, tmp_path) for name, port in ports.items()
            ] + [koppel(f"worker{i}", ["worker", "--metrics-port", str(metrics_ports[i - 1])],
                        env, tmp_path) for i in (1, 2)]
            try:
                wait_ready(processes)
                workers = [p for p in processes if p.name.startswith("worker")]
                wait_until(lambda: all("Starting worker" in w.log_text() for w in workers),
                           30, "the workers start")
                yield Cluster(urls, processes, sessions, demo, client, user, company_id)
            finally:
                stop(processes)
        finally:
            engine.dispose()


def _claims(jwt: str) -> dict:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_two_of_everything_behave_as_one(cluster: Cluster) -> None:
    urls, client = cluster.urls, cluster.client
    basic = (client.client_id, client.secret)
    assert client.redirect_uri == CALLBACK

    # Log in on auth 1, consent on auth 2: the same browser, so the same cookies.
    agent = Browser(SimpleNamespace(url=urls["auth1"]))
    try:
        request = AuthRequest(client, scope=" ".join(SCOPES[:1] + SCOPES[2:]))
        logged_in = agent.log_in(request, cluster.user)
        agent.http.base_url = urls["auth2"]
        linked = agent.walk(logged_in, request.target, cluster.user)
    finally:
        agent.close()
    assert linked.pages == ["consent"], linked
    assert linked.params["iss"] == urls["auth1"]

    # The code is redeemed on auth 2; the app refreshes on auth 1.
    tokens = httpx.post(f"{urls['auth2']}/token", auth=basic, data={
        "grant_type": "authorization_code", "code": linked.params["code"],
        "redirect_uri": request.target, "code_verifier": request.pkce.verifier,
    })
    assert tokens.status_code == 200, tokens.text
    refreshed = httpx.post(f"{urls['auth1']}/token", auth=basic, data={
        "grant_type": "refresh_token", "refresh_token": tokens.json()["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    access = refreshed.json()["access_token"]
    connection_id = _claims(access)["connection_id"]

    with cluster.sessions() as session:
        employee_id = str(session.exec(select(Employee.id).where(
            Employee.company_id == uuid.UUID(cluster.company_id))).first())
    for sync in ("sync1", "sync2"):
        response = httpx.get(f"{urls[sync]}/v1/employees/{employee_id}", headers=_bearer(access))
        assert response.status_code == 200, response.text

    app_token = httpx.post(f"{urls['auth2']}/token", auth=basic, data={
        "grant_type": "client_credentials", "scope": "webhooks.manage"}).json()["access_token"]

    with ThreadedReceiver().running() as receiver:
        hook = httpx.post(f"{urls['sync1']}/v1/webhooks", headers=_bearer(app_token),
                          json={"url": receiver.url(), "events": ["employee.updated"]})
        assert hook.status_code == 201, hook.text
        # A burst of changes on sync 2; the two workers deliver them.
        with httpx.Client(base_url=urls["sync2"], headers=_bearer(access), timeout=30) as http:
            for number in range(BURST):
                response = http.patch(f"/v1/employees/{employee_id}",
                                      json={"last_name": f"Burst-{number}"})
                assert response.status_code == 200, response.text
        with cluster.sessions() as session:
            events = {f"msg_{e.hex}" for e in session.exec(
                select(Event.id).where(Event.type == "employee.updated")).all()}
        assert len(events) == BURST

        def all_arrived() -> bool:
            return {r.headers["webhook-id"] for r in list(receiver.answered)} >= events

        wait_until(all_arrived, 40, f"{BURST} deliveries\n{cluster.logs()}")
        verifier = Webhook(hook.json()["secret"])
        bodies: dict[str, bytes] = {}
        for received in receiver.requests:
            message_id = received.headers["webhook-id"]
            assert verifier.verify(received.body, received.headers)["type"] == "employee.updated"
            # A duplicate is allowed only as the same message.
            assert bodies.setdefault(message_id, received.body) == received.body
        assert set(bodies) == events
    ran = {p.name: p.log_text().count("webhooks.deliver") for p in cluster.processes
           if p.name.startswith("worker")}
    assert all(ran.values()), f"both workers deliver: {ran}"
    texts = [httpx.get(f"{urls[worker]}/metrics").text for worker in ("worker1", "worker2")]
    delivered = sum(float(line.rsplit(" ", 1)[1]) for text in texts for line in text.splitlines()
                    if line.startswith('koppel_webhook_deliveries_total{outcome="succeeded"}'))
    assert delivered >= BURST
    # Each sweep runs on one worker (arq's cron job ids), which sets the gauge.
    assert any('koppel_outbox_depth{queue="deliveries"}' in text for text in texts)

    # A revoke on registry 2 is refused by sync 1 on the very next call.
    revoked = httpx.post(f"{urls['registry2']}/v1/app/connections/{connection_id}/revoke",
                         headers=_bearer(app_token), json={})
    assert revoked.status_code == 200, revoked.text
    refused = httpx.get(f"{urls['sync1']}/v1/employees/{employee_id}", headers=_bearer(access))
    assert refused.status_code == 401, refused.text
    # The metrics of each instance count what it did.
    assert 'grant_type="authorization_code"' in httpx.get(f"{urls['auth2']}/metrics").text
    assert 'grant_type="refresh_token"' in httpx.get(f"{urls['auth1']}/metrics").text
    assert "koppel_connection_revocations_total" in httpx.get(
        f"{urls['registry2']}/metrics").text

    # No process logged a token, the code, the client secret, a webhook secret or the password.
    secrets = [linked.params["code"], tokens.json()["refresh_token"], access, app_token,
               refreshed.json()["refresh_token"], client.secret, hook.json()["secret"],
               cluster.user.password]
    for process in cluster.processes:
        text = process.log_text()
        assert "request_id" in text or process.name.startswith("worker"), process.name
        for secret in secrets:
            assert secret not in text, f"a secret is in the log of {process.name}"
