"""Consent receipts of the registry's own acts (issue 16, item 1): an accountant's
narrowing, the consent lifetime's expiry, a renewal through the API, an accountant's
revoke, a partner's disconnect and an approval each sign a receipt in the act's
transaction, chained per connection, saying how (or by whom) it was done; the acts that
only end or shrink a consent restate the previous receipt's wording."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from sqlmodel import col, select

from services.registry.connections.expiry import expire_due
from shared.attestation import attestation_jwks
from shared.db.types import utcnow
from shared.models import (
    Connection,
    ConsentReceipt,
    ConsentRequest,
    ConsentRequestCompany,
    ScopeWording,
)
from shared.receipts import USER_FIELDS, verify_receipt
from shared.runtime import Runtime
from shared.scopes import SCOPES
from tests.fixtures.factories import make_connection
from tests.services.registry.conftest import World, bearer
from tests.services.registry.support import accountant, set_columns


def chain(world: World, connection_id: Any) -> list[tuple[ConsentReceipt, dict[str, Any]]]:
    """The connection's receipts in order, each with its verified claims."""
    with world.sessions() as session:
        jwks = attestation_jwks(session)
        rows = session.exec(select(ConsentReceipt).where(
            ConsentReceipt.connection_id == connection_id)
            .order_by(col(ConsentReceipt.seq))).all()
        return [(row, verify_receipt(row.jws, jwks)[1]) for row in rows]


async def test_registry_acts_chain_receipts_that_say_how_they_were_done(
    client: httpx.AsyncClient, world: World, runtime: Runtime,
) -> None:
    connection = world.a.connections[0]  # the master client's, to the first app
    user = world.a.users["master_client"]
    books = accountant(world)
    base = f"/v1/environment/connections/{connection.id}"
    narrowed = await client.post(f"{base}/narrow", headers=books,
                                 json={"scopes": ["company.info.read", "offline_access"]})
    assert narrowed.status_code == 200, narrowed.text

    # The consent lifetime runs out (the worker's job).
    set_columns(world, Connection, connection.id, expires_at=utcnow() - timedelta(minutes=1))
    async with runtime.async_session() as session:
        assert await expire_due(session, utcnow()) == [connection.id]
        await session.commit()

    mine = bearer(world.user_token(user))
    renewed = await client.post(f"/v1/me/connections/{connection.id}/renew",
                                headers={**mine, "Accept-Language": "nl"})
    assert renewed.status_code == 200, renewed.text
    revoked = await client.post(f"{base}/revoke", headers=books, json={"reason": "done"})
    assert revoked.status_code == 200, revoked.text

    receipts = chain(world, connection.id)
    assert [(r.act, r.collection_method, r.seq) for r, _ in receipts] == [
        ("narrowed", "accountant", 1), ("expired", "system", 2), ("renewed", "user", 3),
        ("revoked", "accountant", 4)]
    claims = [c for _, c in receipts]
    assert [c["previous_receipt_id"] for c in claims] == [
        None, *(str(r.id) for r, _ in receipts[:-1])]
    accountant_id = world.a.users["accountant"].id
    assert claims[0]["actor"] == claims[3]["actor"] == f"accountant:{accountant_id}"
    assert claims[1]["actor"] == "system:consent_lifetime"
    assert claims[0]["user"] == {"id": str(user.id), "template": "master_client"}
    # No earlier receipt: the catalogue's words, in English; the expiry restates them.
    assert claims[0]["language"] == "en"
    assert [s["scope"] for s in claims[0]["scopes"]] == ["company.info.read",
                                                         "offline_access"]
    assert claims[1]["scopes"] == claims[0]["scopes"]
    assert claims[1]["wording_sha256"] == claims[0]["wording_sha256"]
    # A renewal through the API: the catalogue's words in the caller's language.
    assert claims[2]["language"] == "nl"
    assert claims[2]["scopes"][0]["title"] == SCOPES["company.info.read"].title["nl"]
    assert claims[3]["language"] == "nl" and claims[3]["scopes"] == claims[2]["scopes"]
    with world.sessions() as session:
        stored = session.get(ScopeWording, claims[2]["wording_sha256"])
        assert stored is not None and '"lang":"nl"' in stored.document


async def test_a_disconnect_and_an_approval_sign_receipts_the_partner_reads_without_the_user(
    client: httpx.AsyncClient, world: World,
) -> None:
    app = world.apps[0]
    theirs = bearer(world.app_token(app))
    connection = world.a.connections[0]
    disconnected = await client.post(f"/v1/app/connections/{connection.id}/revoke",
                                     headers=theirs)
    assert disconnected.status_code == 200, disconnected.text
    [(revoke, claims)] = chain(world, connection.id)
    assert (revoke.act, revoke.collection_method) == ("revoked", "app")
    assert claims["actor"] == f"app:{app.client_id}"
    listed = await client.get(f"/v1/app/connections/{connection.id}/receipts", headers=theirs)
    [item] = listed.json()["data"]
    assert item["id"] == str(revoke.id) and item["jws"] == revoke.partner_jws
    with world.sessions() as session:
        _, seen = verify_receipt(item["jws"], attestation_jwks(session))
    assert seen == {k: v for k, v in claims.items() if k not in USER_FIELDS}
    # Another app's connection: 404.
    other = bearer(world.app_token(world.apps[1]))
    refused = await client.get(f"/v1/app/connections/{connection.id}/receipts",
                               headers=other)
    assert refused.status_code == 404

    # The company login asked for the second app; the accountant approves it.
    requester = world.a.users["company"]
    with world.sessions() as session:
        request = ConsentRequest(
            environment_id=requester.environment_id, user_id=requester.id,
            app_id=world.apps[1].id, debtor_id=requester.debtor_id,
            scopes=["company.info.read"], justification="rosters",
            expires_at=utcnow() + timedelta(days=7))
        session.add(request)
        session.flush()
        session.add(ConsentRequestCompany(request_id=request.id,
                                          company_id=world.a.companies[0].id))
        session.commit()
        request_id = request.id
    approved = await client.post(f"/v1/environment/consent-requests/{request_id}/approve",
                                 headers={**accountant(world), "Accept-Language": "nl"})
    assert approved.status_code == 200, approved.text
    with world.sessions() as session:
        made = session.get(ConsentRequest, request_id)
        assert made is not None and made.connection_id is not None
    [(approval, said)] = chain(world, made.connection_id)
    assert (approval.act, approval.collection_method) == ("approved", "approval")
    assert said["actor"] == f"user:{world.a.users['accountant'].id}"
    assert said["user"] == {"id": str(requester.id), "template": "company"}
    assert said["language"] == "nl"
    assert [c["id"] for c in said["companies"]] == [str(world.a.companies[0].id)]


async def test_a_shrunken_reach_narrows_and_then_revokes_with_receipts_of_the_system(
    client: httpx.AsyncClient, world: World,
) -> None:
    hr = world.a.users["hr_manager"]  # reaches the first debtor's two companies
    first, second = world.a.companies[:2]
    with world.sessions() as session:
        linked = make_connection(session, hr, world.apps[1], companies=[first, second],
                                 scopes=["employee.info.read"])
        session.commit()
    provisioner = bearer(world.app_token(world.first_party, "directory.manage"))
    for keep in ([first.id], [world.a.companies[3].id]):
        moved = await client.patch(f"/v1/directory/users/{hr.id}", headers=provisioner,
                                   json={"company_ids": [str(c) for c in keep]})
        assert moved.status_code == 200, moved.text
    receipts = chain(world, linked.id)
    assert [(r.act, r.collection_method) for r, _ in receipts] == [
        ("narrowed", "system"), ("revoked", "system")]
    assert {c["actor"] for _, c in receipts} == {"system:reach"}
    assert receipts[0][1]["companies"] == [{"id": str(first.id), "name": first.name}]
    assert receipts[1][1]["previous_receipt_id"] == str(receipts[0][0].id)
