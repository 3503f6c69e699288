"""The records of processing (issue 16, item 4): per app with a live connection in the
accountant's environment, its data categories, debtors, covered employees, since when
and its webhook hosts; as JSON and as CSV."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import httpx

from services.registry.processing import service
from services.registry.processing.csv_export import document
from services.registry.processing.schemas import ProcessingRecord, ProcessingRecords, RecordApp
from shared.db.types import utcnow
from shared.models import ConnectionStatus, WebhookEndpoint, WebhookEndpointStatus
from shared.models import UserTemplate as T
from shared.scopes import SCOPES
from tests.fixtures import factories as f
from tests.services.registry.conftest import World, bearer

URL = "/v1/environment/processing-records"
SCOPE = "environment.connections.read"


def _endpoint(app_id, url: str, status: WebhookEndpointStatus) -> WebhookEndpoint:
    return WebhookEndpoint(app_id=app_id, url=url, events=["*"], status=status,
                           secret_ciphertext=b"sealed", secret_key_id="k1")


def _scene(world: World) -> dict:
    """In A: app `payroll` with live connections of two debtors (one covering one of two
    companies) and a revoked and an expired one elsewhere; app `gone` with only a
    revoked connection; in B: a live connection of `payroll` that A must not count."""
    now = utcnow()
    with world.sessions() as session:
        env = world.a.environment
        d1, d2, d3 = (f.make_debtor(session, env, name=n) for n in ("Bakkerij", "Atelier",
                                                                      "Zuivel"))
        c1, c2 = f.make_company(session, d1), f.make_company(session, d1)
        c3, c4 = f.make_company(session, d2), f.make_company(session, d3)
        for company, n in ((c1, 2), (c2, 1), (c3, 3), (c4, 4)):
            for _ in range(n):
                f.make_employee(session, company)
        scopes = ["employee.info.read", "employee.absence.read", "employee.bankaccount.read",
                  "company.info.read", "offline_access"]
        payroll = f.make_app(session, name="=Payroll", scopes=scopes)
        gone = f.make_app(session, name="Gone", scopes=["employee.info.read"])

        def consent(app, debtor, companies, chosen, **fields):
            user = f.make_user(session, env, template=T.MASTER_CLIENT, debtor=debtor)
            return f.make_connection(session, user, app, debtor=debtor, companies=companies,
                                     scopes=chosen, **fields)

        first = consent(payroll, d1, [c1], ["employee.info.read", "offline_access"],
                        created_at=now - timedelta(days=30))
        consent(payroll, d2, [c3], ["employee.absence.read", "company.info.read"])
        consent(payroll, d3, [c4], ["employee.bankaccount.read"],
                status=ConnectionStatus.REVOKED)
        consent(payroll, d3, [c4], ["employee.bankaccount.read"],
                expires_at=now - timedelta(minutes=1))  # past its expiry: not live
        consent(gone, d3, [c4], ["employee.info.read"], status=ConnectionStatus.REVOKED)
        b_user = world.b.users["master_client"]
        f.make_connection(session, session.merge(b_user), payroll,
                          companies=world.b.companies[:1], scopes=["employee.bankaccount.read"])
        session.add(_endpoint(payroll.id, "https://hooks.payroll.example/koppel",
                              WebhookEndpointStatus.ACTIVE))
        session.add(_endpoint(payroll.id, "https://hooks.payroll.example/other",
                              WebhookEndpointStatus.ACTIVE))
        session.add(_endpoint(payroll.id, "https://old.payroll.example/x",
                              WebhookEndpointStatus.DISABLED))
        session.commit()
        return {"payroll": payroll.client_id, "gone": gone.client_id, "since": first.created_at,
                "debtors": [(str(d2.id), "Atelier"), (str(d1.id), "Bakkerij")]}


async def test_each_app_with_a_live_connection_gets_its_record(world: World,
                                                               client: httpx.AsyncClient
                                                               ) -> None:
    scene = _scene(world)
    token = world.user_token(world.a.users["accountant"], SCOPE)
    response = await client.get(URL, headers=bearer(token))
    assert response.status_code == 200, response.text
    records = {r["app"]["client_id"]: r for r in response.json()["data"]}
    assert scene["gone"] not in records  # only a revoked connection
    record = records[scene["payroll"]]
    assert record["app"]["name"] == "=Payroll"
    assert [(c["sensitivity"], [s["scope"] for s in c["scopes"]])
            for c in record["categories"]] == [
        ("special_category", ["employee.absence.read"]),
        ("personal", ["employee.info.read"]),
        ("normal", ["company.info.read"]),
    ]  # not the revoked or expired connections' bank account, not offline_access
    assert all(s["title"] for c in record["categories"] for s in c["scopes"])
    assert [(d["id"], d["name"]) for d in record["debtors"]] == scene["debtors"]
    assert record["employees"] == 2 + 3  # c1's and c3's; not c2's, c4's or B's
    assert record["connections"] == 2
    assert record["since"].startswith(scene["since"].date().isoformat())
    assert record["webhook_hosts"] == ["hooks.payroll.example"]

    as_csv = await client.get(URL, headers={**bearer(token), "Accept": "text/csv"})
    assert as_csv.status_code == 200
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = {r["app_client_id"]: r for r in csv.DictReader(io.StringIO(as_csv.text))}
    assert set(rows) == set(records)
    row = rows[scene["payroll"]]
    assert row["app_name"] == "'=Payroll"  # never a spreadsheet formula
    assert row["scopes_special_category"] == "employee.absence.read"
    assert row["scopes_sensitive"] == ""
    assert (row["employees"], row["connections"]) == ("5", "2")
    assert row["debtors"] == "Atelier; Bakkerij"
    assert row["webhook_hosts"] == "hooks.payroll.example"


async def test_only_the_accountant_reads_them(world: World, client: httpx.AsyncClient
                                              ) -> None:
    scene = _scene(world)
    master = world.user_token(world.a.users["master_client"], "connections.read")
    assert (await client.get(URL, headers=bearer(master))).status_code == 403
    other = world.user_token(world.b.users["accountant"], SCOPE)
    response = await client.get(URL, headers=bearer(other))
    assert response.status_code == 200
    records = {r["app"]["client_id"]: r for r in response.json()["data"]}
    record = records[scene["payroll"]]  # B's own connection of the app, for B alone
    assert record["connections"] == 1
    assert [d["id"] for d in record["debtors"]] == [str(world.b.companies[0].debtor_id)]
    title = SCOPES["employee.bankaccount.read"].localized("en")["title"]
    assert record["categories"] == [{"sensitivity": "sensitive", "scopes": [
        {"scope": "employee.bankaccount.read", "title": title}]}]


def test_a_hostile_webhook_host_stays_one_harmless_cell() -> None:
    """A host name the webhook URL check lets through (`,`, `=`, `-` are syntax, DNS
    decides the rest) is one cell, and never a spreadsheet formula."""
    hosts = service.hosts(["https://-2+3,=1+1.evil.example/hook"])
    record = ProcessingRecord(
        app=RecordApp(client_id="c", name="n", publisher=None, policy_uri=None),
        categories=[], debtors=[], employees=0, connections=1, since=utcnow(),
        webhook_hosts=hosts)
    header, row = list(csv.reader(io.StringIO(
        document(ProcessingRecords(data=[record], generated_at=utcnow())))))
    assert len(row) == len(header)
    assert row[header.index("webhook_hosts")] == "'-2+3,=1+1.evil.example"
