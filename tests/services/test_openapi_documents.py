"""The OpenAPI documents make clients a generator can use (issue 17, item 2): each is valid
OpenAPI (openapi-spec-validator), names its server, declares the OAuth 2.0 scheme with
the auth service's endpoints and the scope catalogue, gives every operation a readable
unique `operationId`, a tag, its `security` (the scopes of its policy rule) and the
problem answers it can give; and a client generated from the registry's and the sync
service's document (openapi-python-client) calls the running service and gets typed
`Problem` answers for refusals instead of an "unexpected status".
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from openapi_spec_validator import validate

from services.registry.app import create_app as create_registry
from services.sync.app import create_app as create_sync
from shared.config import Settings, service_url
from shared.errors import PROBLEM_JSON
from shared.idempotency.keys import HEADER as IDEMPOTENCY_KEY
from shared.openapi import operations
from shared.policy import RULES
from shared.policy.dependency import OPERATION_KEY
from shared.policy.openapi import OAUTH2, OPERATION_ID, camel, security
from shared.scopes import CONSENT_SCOPES, SCOPES
from tests.security.conftest import Pair, pair  # noqa: F401 - the fixture
from tests.services.conftest import APP_FACTORIES

SETTINGS = Settings(_env_file=None)
DOCUMENTS = {name: factory(SETTINGS).openapi() for name, factory in APP_FACTORIES.items()}
PROBLEM = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
OAUTH_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/OAuthError"}}}
# RFC 7591/7592 answer their own error body (RegistrationErrorOut), as the RFC says.
REGISTRATION_ERROR = {"application/json": {
    "schema": {"$ref": "#/components/schemas/RegistrationErrorOut"}}}
SERVICES = sorted(DOCUMENTS)


def _operations(service: str) -> list[tuple[str, str, dict[str, Any]]]:
    return list(operations(DOCUMENTS[service]))


def _is_page(operation: dict[str, Any]) -> bool:
    return any("text/html" in answer.get("content", {})
               for status, answer in operation["responses"].items() if status < "300")


@pytest.mark.parametrize("service", SERVICES)
def test_each_document_is_valid_openapi(service: str) -> None:
    validate(DOCUMENTS[service])


@pytest.mark.parametrize("service", SERVICES)
def test_the_server_and_the_oauth2_scheme(service: str) -> None:
    document = DOCUMENTS[service]
    assert document["servers"] == [{"url": service_url(SETTINGS, service)}]
    flows = document["components"]["securitySchemes"][OAUTH2]["flows"]
    code, credentials = flows["authorizationCode"], flows["clientCredentials"]
    assert code["authorizationUrl"] == f"{SETTINGS.issuer}/authorize"
    assert code["tokenUrl"] == credentials["tokenUrl"] == f"{SETTINGS.issuer}/token"
    assert set(code["scopes"]) >= CONSENT_SCOPES
    assert "webhooks.manage" not in code["scopes"]  # an app's own scope: client credentials
    assert credentials["scopes"]["webhooks.manage"] == SCOPES["webhooks.manage"].description["en"]
    offered = set(code["scopes"]) | set(credentials["scopes"])
    for method, path, operation in _operations(service):
        for requirement in operation["security"]:
            assert set(requirement.get(OAUTH2, ())) <= offered, f"{method} {path}"


@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_has_a_unique_readable_id_a_tag_and_security(service: str) -> None:
    ids = []
    for method, path, operation in _operations(service):
        assert OPERATION_ID.match(operation["operationId"]), f"{method} {path}"
        assert operation.get("tags"), f"{method} {path}"
        assert isinstance(operation["security"], list), f"{method} {path}"
        ids.append(operation["operationId"])
        named = operation.get(OPERATION_KEY)
        if named is not None and named != "health":  # two probes: health.live, health.ready
            assert operation["operationId"] == ".".join(map(camel, named.split(".")))
    assert len(ids) == len(set(ids))


def test_the_ids_read_as_the_issue_asks() -> None:
    ids = {(service, operation["operationId"]) for service in SERVICES
           for _, _, operation in _operations(service)}
    assert {("sync", "employees.read"), ("sync", "webhooks.rotateSecret"),
            ("registry", "environment.connections.bulkRevoke"), ("auth", "oauth2.token"),
            ("sync", "health.live")} <= ids


@pytest.mark.parametrize("service", ["registry", "sync"])
def test_security_is_the_policy_rule(service: str) -> None:
    """Any one of a rule's scopes suffices: one requirement per scope."""
    for method, path, operation in _operations(service):
        rule = RULES[operation[OPERATION_KEY]]
        assert operation["security"] == security(rule), f"{method} {path}"
    [changes] = [o for _, p, o in _operations("sync") if p == "/v1/changes"]
    assert {"oauth2": ["employee.info.read"]} in changes["security"]
    assert all(len(requirement[OAUTH2]) == 1 for requirement in changes["security"])
    assert [o["security"] for _, p, o in _operations("registry") if p == "/v1/scopes"] == [[]]


@pytest.mark.parametrize("service", SERVICES)
def test_every_refusal_is_documented_with_its_body(service: str) -> None:
    for method, path, operation in _operations(service):
        responses, where = operation["responses"], f"{method} {path}"
        parameters = {p["name"] for p in operation.get("parameters", [])}
        expected = set()
        if any(OAUTH2 in r for r in operation["security"]) and service != "auth":
            expected |= {"401", "403"}
        if "{" in path:
            expected.add("404")
        if "If-Match" in parameters:
            expected.add("412")
        if IDEMPOTENCY_KEY in parameters:
            expected |= {"409", "422"}
        if "requestBody" in operation:
            expected |= {"413"} if operation.get("x-koppel-oauth-errors") else {"413", "422"}
        assert expected <= set(responses), f"{where}: {sorted(expected - set(responses))}"
        if _is_page(operation):
            continue
        for status, answer in responses.items():
            if status.startswith("4"):
                assert answer["content"] in (PROBLEM, OAUTH_ERROR, REGISTRATION_ERROR), \
                    f"{where} {status}"
                assert answer["content"] != OAUTH_ERROR or service == "auth", where


def test_the_sync_rate_limit_and_the_auth_oauth_errors_are_documented() -> None:
    sync = {(m, p): o for m, p, o in _operations("sync")}
    limited = sync[("get", "/v1/companies/{company_id}/employees")]["responses"]["429"]
    assert limited["content"] == PROBLEM and "Retry-After" in limited["headers"]
    auth = {(m, p): o for m, p, o in _operations("auth")}
    for path in ("/token", "/revoke", "/introspect"):
        for status in ("400", "401", "413", "429"):
            assert auth[("post", path)]["responses"][status]["content"] == OAUTH_ERROR
    assert auth[("get", "/userinfo")]["security"] == [{OAUTH2: ["openid"]}]
    assert auth[("get", "/userinfo")]["responses"]["401"]["content"] == OAUTH_ERROR
    assert auth[("get", "/.well-known/jwks.json")]["security"] == []
    assert DOCUMENTS["auth"]["components"]["schemas"]["OAuthError"]["required"] == ["error"]


# -- a generated client against the running service --------------------------------------


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ModuleType]]:
    """Client packages generated once from the registry's and sync's documents (offline:
    the generator's output is a package directory, put on sys.path)."""
    root = tmp_path_factory.mktemp("generated")
    config = root / "config.json"
    config.write_text(json.dumps({"post_hooks": []}))  # no formatter run: faster
    generator = Path(sys.executable).with_name("openapi-python-client")
    for service in ("registry", "sync"):
        document = root / f"{service}.json"
        document.write_text(json.dumps(DOCUMENTS[service]))
        done = subprocess.run(
            [generator, "generate", "--path", document, "--output-path",
             root / f"koppel_{service}", "--meta", "none", "--config", config],
            capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr
    sys.path.insert(0, str(root))
    try:
        yield {service: importlib.import_module(f"koppel_{service}")
               for service in ("registry", "sync")}
    finally:
        sys.path.remove(str(root))
        for name in [n for n in sys.modules if n.startswith(("koppel_registry", "koppel_sync"))]:
            del sys.modules[name]


@contextlib.contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """The app under uvicorn on a real socket, in a thread with its own event loop."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_config=None,
                                           log_level="warning"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])),
                              daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def _api(package: ModuleType, module: str) -> Any:
    return importlib.import_module(f"{package.__name__}.api.{module}")


def test_a_generated_client_calls_sync_and_gets_typed_problems(
    clients: dict[str, ModuleType], pair: Pair,  # noqa: F811
) -> None:
    package = clients["sync"]
    problem_type = importlib.import_module(f"{package.__name__}.models.problem").Problem
    employees_read = _api(package, "data.employees_read")
    companies_list = _api(package, "data.companies_list")
    mine, theirs = pair.a.employees[0], pair.b.employees[0]
    with serving(create_sync(pair.world.settings)) as url:
        def client(caller: str | None) -> Any:
            if caller is None:
                return package.Client(base_url=url, raise_on_unexpected_status=True)
            return package.AuthenticatedClient(base_url=url, token=pair.tokens[caller],
                                               raise_on_unexpected_status=True)

        accountant = client("accountant")
        companies = companies_list.sync_detailed(client=accountant)
        assert companies.status_code == 200
        employee = employees_read.sync(mine.id, client=accountant)
        assert str(employee.id) == str(mine.id)  # a typed EmployeeOut
        # Another environment's employee: 404, parsed as the documented Problem.
        missing = employees_read.sync_detailed(theirs.id, client=accountant)
        assert missing.status_code == 404 and isinstance(missing.parsed, problem_type)
        assert missing.parsed.type_ == "urn:koppel:problem:not-found"
        # The partner app's own token may not read payroll data: 403.
        refused = employees_read.sync(mine.id, client=client("partner_app"))
        assert isinstance(refused, problem_type) and refused.status == 403
        assert refused.type_ == "urn:koppel:problem:forbidden"
        anonymous = employees_read.sync(uuid.uuid4(), client=client(None))
        assert isinstance(anonymous, problem_type) and anonymous.status == 401


def test_a_generated_client_calls_the_registry(
    clients: dict[str, ModuleType], pair: Pair,  # noqa: F811
) -> None:
    package = clients["registry"]
    problem_type = importlib.import_module(f"{package.__name__}.models.problem").Problem
    scopes_list = _api(package, "scope_catalogue.scopes_list")
    users_read = _api(package, "directory.directory_users_read")
    with serving(create_registry(pair.world.settings)) as url:
        public = package.Client(base_url=url, raise_on_unexpected_status=True)
        catalogue = scopes_list.sync(client=public)
        assert {scope.scope for scope in catalogue.data} >= CONSENT_SCOPES
        accountant = package.AuthenticatedClient(base_url=url, token=pair.tokens["accountant"],
                                                 raise_on_unexpected_status=True)
        # Provisioning is for the SaaS's own apps: 403, a typed Problem.
        refused = users_read.sync(uuid.uuid4(), client=accountant)
        assert isinstance(refused, problem_type) and refused.status == 403
