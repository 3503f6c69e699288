"""Optional OpenTelemetry tracing: with KOPPEL_OTEL_ENABLED the services and the worker
export spans over OTLP/HTTP (to a real HTTP receiver here, decoded with
opentelemetry-proto) and their log lines carry the trace ids; off, nothing is loaded."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from services.sync.app import create_app
from shared.config import Settings
from shared.jobs import EVENTS_RELAY
from shared.runtime import Runtime
from tests.services.conftest import running
from tests.services.sync.conftest import (  # noqa: F401 - fixtures
    Receiver,
    Tokens,
    receiver,
    tokens,
    wait_for,
    worker_running,
)
from tests.services.sync.test_webhook_delivery import settled, subscribe
from tests.services.sync.worlds import World, world  # noqa: F401 - fixture

ROUTE = "/v1/companies/{company_id}/employees"


@dataclass
class ExportedSpan:
    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    attributes: dict[str, Any]


@dataclass
class Collector:
    """An OTLP/HTTP receiver: takes protobuf POSTs on /v1/traces."""

    port: int = 0
    spans: list[ExportedSpan] = field(default_factory=list)
    content_types: set[str] = field(default_factory=set)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.Response:
        if request.method != "POST" or request.path != "/v1/traces":
            return web.Response(status=404)
        self.content_types.add(request.content_type)
        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.read())
        for resource_spans in export.resource_spans:
            resource = {a.key: a.value.string_value
                        for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(ExportedSpan(
                        resource.get("service.name", ""), span.name, span.kind,
                        span.trace_id.hex(), span.span_id.hex(),
                        {a.key: _value(a.value) for a in span.attributes}))
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    def named(self, service: str, name: str) -> list[ExportedSpan]:
        return [s for s in self.spans if s.service == service and s.name == name]


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    found = Collector()
    runner = web.ServerRunner(web.Server(found.handle), shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    found.port = site._server.sockets[0].getsockname()[1]
    try:
        yield found
    finally:
        await runner.cleanup()


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def test_a_write_and_its_delivery_are_exported_as_spans(
    settings: Settings, collector: Collector, tokens: Tokens, world: World,  # noqa: F811
    receiver: Receiver, runtime: Runtime,  # noqa: F811
    committing_sessions: sessionmaker[Session], capsys: pytest.CaptureFixture,
) -> None:
    traced = settings.model_copy(update={
        "otel_enabled": True, "otel_endpoint": collector.endpoint,
        "otel_service_name_prefix": "koppel-test", "log_json": True, "log_level": "info"})
    request_id = f"trace-{uuid.uuid4().hex}"
    auth = tokens.connection(world.connections["both"], world.apps["both"])
    company_id = world.companies[0].id
    async with running(create_app(traced)) as client:
        await subscribe(client, tokens, world.apps["both"], receiver.url("/ok"),
                        ["employee.created"])
        created = await client.post(
            f"/v1/companies/{company_id}/employees",
            json={"number": "T-1", "first_name": "Bea", "last_name": "Wit"},
            headers={**auth, "X-Request-Id": request_id})
        assert created.status_code == 201, created.text
        listed = await client.get(f"/v1/companies/{company_id}/employees",
                                  params={"limit": 5, "probe": "QUERY-VALUE-x1"},
                                  headers=auth)
        assert listed.status_code in (200, 422), listed.text
        assert (await client.get("/healthz")).status_code == 200
    # The app's lifespan ended: its provider has flushed its batch to the collector.
    assert collector.content_types == {"application/x-protobuf"}
    [server] = [s for s in collector.named("koppel-test-sync", f"POST {ROUTE}")
                if s.attributes.get("koppel.request_id") == request_id]
    assert server.kind == 2  # SPAN_KIND_SERVER
    assert server.attributes["http.route"] == ROUTE
    status = server.attributes.get("http.response.status_code",
                                   server.attributes.get("http.status_code"))
    assert status == 201
    assert not [s for s in collector.spans if "healthz" in s.name]  # not traced
    [listing] = collector.named("koppel-test-sync", f"GET {ROUTE}")
    assert listing.attributes["http.url"].endswith(f"/v1/companies/{company_id}/employees")
    assert not [s for s in collector.spans if "QUERY-VALUE-x1" in json.dumps(s.attributes)]

    capsys.readouterr()
    # Debug: a successful delivery is logged at debug level.
    async with worker_running(traced.model_copy(update={"log_level": "debug"})):
        await wait_for(lambda: receiver.to("/ok"))
        await wait_for(settled(runtime, 1))
    lines = json_lines(capsys.readouterr().err)
    # The worker's provider flushed at shutdown: the relay job the request nudged is a
    # consumer span tagged with its request id; the delivery's log line carries the ids
    # of the job span it ran in (that job, or the sweeper's if it came first).
    [nudged] = [s for s in collector.named("koppel-test-worker", EVENTS_RELAY)
                if s.attributes.get("koppel.request_id") == request_id]
    assert nudged.kind == 5  # SPAN_KIND_CONSUMER
    assert nudged.attributes["job"] == EVENTS_RELAY
    [attempt] = [line for line in lines if line.get("event") == "webhook delivered"]
    assert attempt["request_id"] == request_id
    jobs = {(s.trace_id, s.span_id): s for s in collector.spans
            if s.service == "koppel-test-worker"}
    assert jobs[attempt["trace_id"], attempt["span_id"]].kind == 5
    # Nothing about the trace reaches the partner.
    [sent] = receiver.to("/ok")
    assert "traceparent" not in {k.lower() for k in sent.headers}


def test_off_by_default_nothing_is_loaded() -> None:
    """Off, neither the SDK, the exporter nor the instrumentation is imported, and no
    tracing middleware wraps the app."""
    script = """
import sys
from services.sync.app import create_app
from worker.main import build_worker
from shared.config import Settings
settings = Settings(var_dir="/nonexistent")
assert settings.otel_enabled is False
app = create_app(settings)
build_worker(settings)
stack = app.build_middleware_stack()
names = []
while stack is not None:
    names.append(type(stack).__name__)
    stack = getattr(stack, "app", None)
assert "OpenTelemetryMiddleware" not in names, names
loaded = sorted(m for m in sys.modules if m.startswith(
    ("opentelemetry.sdk", "opentelemetry.exporter", "opentelemetry.instrumentation")))
assert loaded == [], loaded
print("ok")
"""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": "."}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
