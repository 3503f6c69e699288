"""Access reviews end to end (issue 19 item 2), with the real auth service and real
consents: an accountant review decided `keep` and `revoke` over HTTP, its default
applied by the worker's job at the due date (time moved by passing `now`, never by
sleeping); a consenting-user review decided through /v1/me; filters, cursor pages, CSV;
409 for a second decision and for one after the due date; 404 for another user's item
and another environment's review. A revoked connection's token is refused on its next
sync call, and the revoke says `reason: access_review` in the event and the audit log."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import timedelta

import httpx
from sqlmodel import col, select

from services.registry.app import create_app as create_registry
from services.registry.jobs import run_review_defaults
from services.sync.app import create_app as create_sync
from shared.config import Settings
from shared.db.types import utcnow
from shared.models import (
    AccessReview,
    AccessReviewStatus,
    Connection,
    ConsentReceipt,
    Environment,
    Event,
    UserTemplate,
)
from shared.runtime import open_runtime
from tests.fixtures.auth_server import APP_SCOPES, AuthServer, new_client
from tests.services.auth.conftest import Tree, create_user
from tests.services.auth.support import AuthRequest, Browser, obtain_tokens
from tests.services.conftest import running
from tests.services.registry.support import (
    FRONTEND_SCOPES,
    bearer_of,
    fresh_address,
    new_tree,
    registry_settings,
)

PARTNER_SCOPE = "company.info.read offline_access"
REVIEWS = "/v1/environment/access-reviews"


def _revoke_events(server: AuthServer, connection_id: str) -> list[Event]:
    with server.sessions() as session:
        return list(session.exec(select(Event).where(
            Event.connection_id == uuid.UUID(connection_id),
            Event.type == "connection.revoked")).all())


def _status(server: AuthServer, connection_id: str) -> str:
    with server.sessions() as session:
        row = session.get(Connection, uuid.UUID(connection_id))
        assert row is not None
        return row.status


class Setup:
    """An environment with a master client who linked three partner apps, a company
    login who linked the first, an accountant, and their first-party tokens."""

    def __init__(self, server: AuthServer) -> None:
        self.server = server
        self.environment_ids: list[str] = []
        self.tree = self.own_tree()
        self.user = create_user(server, self.tree, UserTemplate.MASTER_CLIENT)
        self.other = create_user(server, self.tree, UserTemplate.COMPANY)
        self.accountant = create_user(server, self.tree, UserTemplate.ACCOUNTANT)
        with server.sessions() as session, session.begin():
            environment = session.get(Environment, uuid.UUID(self.tree.environment_id))
            self.apps = [new_client(session, server.keyring, name=f"Review App {i}",
                                    scopes=APP_SCOPES) for i in range(3)]
            self.frontend = new_client(session, server.keyring, first_party=True,
                                       environment=environment, publisher="Koppel",
                                       scopes=FRONTEND_SCOPES)
        self.agents = [Browser(server, fresh_address()) for _ in range(3)]
        agent, other_agent, books_agent = self.agents
        self.mine = bearer_of(obtain_tokens(server, agent, AuthRequest(
            self.frontend, scope="openid connections.read connections.manage"), self.user))
        self.theirs = bearer_of(obtain_tokens(server, other_agent, AuthRequest(
            self.frontend, scope="openid connections.read connections.manage"), self.other))
        self.books = bearer_of(obtain_tokens(server, books_agent, AuthRequest(
            self.frontend, scope="openid environment.connections.read "
                                 "environment.connections.manage"), self.accountant))
        # Real consents: the user's to each app, the company login's to the first.
        self.tokens = [obtain_tokens(server, agent, AuthRequest(app, scope=PARTNER_SCOPE),
                                     self.user) for app in self.apps]
        self.other_tokens = obtain_tokens(server, other_agent,
                                          AuthRequest(self.apps[0], scope=PARTNER_SCOPE),
                                          self.other)

    def own_tree(self) -> Tree:
        """An environment of this test (see `close`)."""
        tree = new_tree(self.server)
        self.environment_ids.append(tree.environment_id)
        return tree

    def close(self) -> None:
        """Close the browsers and complete the reviews the test left open: the review
        job acts on the whole shared database, and another test counts what it does."""
        for agent in self.agents:
            agent.close()
        with self.server.sessions() as session, session.begin():
            left = session.exec(select(AccessReview).where(
                col(AccessReview.environment_id).in_(
                    [uuid.UUID(e) for e in self.environment_ids]),
                AccessReview.status == AccessReviewStatus.OPEN)).all()
            for review in left:
                review.status = AccessReviewStatus.COMPLETED
                review.completed_at = utcnow()


async def _connections(registry: httpx.AsyncClient, headers: dict) -> dict[str, str]:
    """client_id -> connection id of the caller's connections."""
    listed = (await registry.get("/v1/me/connections", headers=headers)).json()["data"]
    return {c["app"]["client_id"]: c["id"] for c in listed}


async def test_an_accountant_review_with_both_decisions_and_its_default(
    settings: Settings, auth_server: AuthServer,
) -> None:
    s = Setup(auth_server)
    reg = registry_settings(settings, auth_server)
    try:
        async with running(create_registry(reg)) as registry, \
                running(create_sync(reg)) as sync, open_runtime(reg) as runtime:
            mine = await _connections(registry, s.mine)
            ids = [mine[app.client_id] for app in s.apps]
            # Bad input changes nothing: a past due date, an unknown reviewer.
            past = await registry.post(REVIEWS, headers=s.books, json={
                "name": "Q4", "reviewer": "accountant", "default_decision": "revoke",
                "due_at": (utcnow() - timedelta(hours=1)).isoformat()})
            assert past.status_code == 422, past.text
            assert past.json()["field"] == "due_at"
            wrong = await registry.post(REVIEWS, headers=s.books, json={
                "name": "Q4", "reviewer": "robot", "default_decision": "revoke",
                "due_at": (utcnow() + timedelta(days=7)).isoformat()})
            assert wrong.status_code == 422
            assert (await registry.get(REVIEWS, headers=s.books)).json()["data"] == []
            # The user's consents are reviewed by the accountants (filter: this user).
            due = utcnow() + timedelta(days=14)
            created = await registry.post(REVIEWS, headers=s.books, json={
                "name": "Q4 review", "filter": {"user": str(s.user.id)},
                "reviewer": "accountant", "due_at": due.isoformat(),
                "default_decision": "revoke"})
            assert created.status_code == 201, created.text
            review = created.json()
            assert review["item_count"] == 3 and review["status"] == "open"
            rid = review["id"]
            # A partner app's token may not make one; the user's may not either.
            assert (await registry.post(REVIEWS, headers=s.mine, json={
                "name": "x", "reviewer": "accountant", "default_decision": "keep",
                "due_at": due.isoformat()})).status_code == 403
            listed = (await registry.get(REVIEWS, headers=s.books)).json()["data"]
            assert [r["id"] for r in listed] == [rid]

            # Items: cursor pages of 2, every connection of the user once.
            items_url = f"{REVIEWS}/{rid}/items"
            first = await registry.get(items_url, headers=s.books, params={"limit": 2})
            assert first.status_code == 200, first.text
            assert len(first.json()["data"]) == 2 and first.json()["next_cursor"]
            assert 'rel="next"' in first.headers["link"]
            second = (await registry.get(items_url, headers=s.books, params={
                "limit": 2, "cursor": first.json()["next_cursor"]})).json()
            items = first.json()["data"] + second["data"]
            assert second["next_cursor"] is None
            assert sorted(i["connection_id"] for i in items) == sorted(ids)
            by_connection = {i["connection_id"]: i["id"] for i in items}
            keep, revoke, left = (by_connection[i] for i in ids)

            # keep the first app's, revoke the second's (a reason is required).
            decide = f"{items_url}/{{}}/decision"
            no_reason = await registry.post(decide.format(revoke), headers=s.books,
                                            json={"decision": "revoke"})
            assert no_reason.status_code == 422
            kept = await registry.post(decide.format(keep), headers=s.books,
                                       json={"decision": "keep", "reason": "still used"})
            assert kept.status_code == 200, kept.text
            assert kept.json()["decision"] == "keep"
            assert (await sync.get("/v1/debtors", headers=bearer_of(s.tokens[1]))).status_code \
                == 200
            revoked = await registry.post(decide.format(revoke), headers=s.books,
                                          json={"decision": "revoke", "reason": "not used"})
            assert revoked.status_code == 200, revoked.text
            assert revoked.json()["connection_status"] == "revoked"
            # The revoked connection's token is refused on its next call; the kept works.
            assert (await sync.get("/v1/debtors", headers=bearer_of(s.tokens[1]))).status_code \
                == 401
            assert (await sync.get("/v1/debtors", headers=bearer_of(s.tokens[0]))).status_code \
                == 200
            [event] = _revoke_events(auth_server, ids[1])
            assert event.data["reason"] == "access_review"
            chain = (await registry.get(f"/v1/environment/connections/{ids[1]}/receipts",
                                        headers=s.books)).json()["data"]
            assert [r["act"] for r in chain] == ["granted", "revoked"]
            with auth_server.sessions() as session:
                receipt = session.get(ConsentReceipt, uuid.UUID(chain[1]["id"]))
                assert receipt is not None and receipt.collection_method == "access_review"
            # Deciding twice: 409, and nothing changes.
            again = await registry.post(decide.format(keep), headers=s.books,
                                        json={"decision": "revoke", "reason": "changed"})
            assert again.status_code == 409
            assert _status(auth_server, ids[0]) == "active"
            # An item not of this review, or unknown: 404.
            assert (await registry.post(decide.format(uuid.uuid4()), headers=s.books,
                                        json={"decision": "keep"})).status_code == 404
            # Consenting users do not decide an accountant review's items.
            assert (await registry.post(f"/v1/me/access-reviews/items/{left}/decision",
                                        headers=s.mine, json={"decision": "keep"})
                    ).status_code == 404

            # Filters and CSV.
            undecided = (await registry.get(items_url, headers=s.books,
                                            params={"decision": "undecided"})).json()["data"]
            assert [i["id"] for i in undecided] == [left]
            by_app = (await registry.get(items_url, headers=s.books,
                                         params={"app": s.apps[1].client_id})).json()["data"]
            assert [i["id"] for i in by_app] == [revoke]
            exported = await registry.get(items_url, headers={**s.books, "Accept": "text/csv"},
                                          params={"decision": "keep"})
            assert exported.status_code == 200
            assert exported.headers["content-type"].startswith("text/csv")
            rows = list(csv.DictReader(io.StringIO(exported.text)))
            assert [(r["id"], r["decision"], r["reason"]) for r in rows] == [
                (keep, "keep", "still used")]
            full = list(csv.DictReader(io.StringIO((await registry.get(
                items_url, headers={**s.books, "Accept": "text/csv"})).text)))
            assert len(full) == 3

            summary = (await registry.get(f"{REVIEWS}/{rid}", headers=s.books)).json()
            assert summary["by_decision"] == {"keep": 1, "revoke": 1, "undecided": 1}
            assert summary["progress"] == {"items": 3, "decided": 2, "undecided": 1,
                                           "percent": 66}
            assert {a["app"]["client_id"]: (a["keep"], a["revoke"], a["undecided"])
                    for a in summary["by_app"]} == {
                s.apps[0].client_id: (1, 0, 0), s.apps[1].client_id: (0, 1, 0),
                s.apps[2].client_id: (0, 0, 1)}

            # Before the due date the job does nothing; at it the default decides.
            assert await run_review_defaults(runtime.async_session, runtime.redis,
                                             due - timedelta(minutes=1)) == 0
            assert (await sync.get("/v1/debtors", headers=bearer_of(s.tokens[2]))).status_code \
                == 200
            assert await run_review_defaults(runtime.async_session, runtime.redis,
                                             due + timedelta(seconds=1)) == 1
            assert await run_review_defaults(runtime.async_session, runtime.redis,
                                             due + timedelta(minutes=2)) == 0  # idempotent
            assert (await sync.get("/v1/debtors", headers=bearer_of(s.tokens[2]))).status_code \
                == 401
            assert _status(auth_server, ids[2]) == "revoked"
            [event] = _revoke_events(auth_server, ids[2])
            assert event.data["reason"] == "access_review"
            summary = (await registry.get(f"{REVIEWS}/{rid}", headers=s.books)).json()
            assert summary["status"] == "completed" and summary["completed_at"]
            assert summary["by_decision"] == {"keep": 1, "revoke": 2, "undecided": 0}
            assert summary["progress"]["percent"] == 100
            item = next(i for i in (await registry.get(items_url, headers=s.books)).json()[
                "data"] if i["id"] == left)
            assert item["decided_by"] == "system:default" and item["decision"] == "revoke"
            # A decision after the due date: 409.
            late = await registry.post(decide.format(left), headers=s.books,
                                       json={"decision": "keep"})
            assert late.status_code == 409

            # Everything is in the audit log, the revokes with reason access_review.
            async def audited(action: str) -> list[dict]:
                return (await registry.get("/v1/environment/audit-events", headers=s.books,
                                           params={"action": action})).json()["data"]
            assert len(await audited("access_review.created")) == 1
            assert len(await audited("access_review.decided")) == 2
            assert len(await audited("access_review.default_applied")) == 1
            assert len(await audited("access_review.completed")) == 1
            revokes = await audited("connection.revoked")
            assert len(revokes) == 2
            assert all(r["details"]["reason"] == "access_review" for r in revokes), revokes

            # Another environment's review is 404 to this accountant.
            foreign = s.own_tree()
            stranger = create_user(auth_server, foreign, UserTemplate.ACCOUNTANT)
            with auth_server.sessions() as session, session.begin():
                other = AccessReview(environment_id=uuid.UUID(foreign.environment_id),
                                     name="theirs", reviewer="accountant",
                                     default_decision="keep", due_at=due,
                                     created_by=uuid.UUID(str(stranger.id)))
                session.add(other)
                session.flush()
                other_id = other.id
            assert (await registry.get(f"{REVIEWS}/{other_id}", headers=s.books)
                    ).status_code == 404
            assert (await registry.get(f"{REVIEWS}/{other_id}/items", headers=s.books)
                    ).status_code == 404
            assert [r["id"] for r in (await registry.get(REVIEWS, headers=s.books)).json()[
                "data"]] == [rid]
    finally:
        s.close()


async def test_a_consenting_user_review_decided_through_me(
    settings: Settings, auth_server: AuthServer,
) -> None:
    s = Setup(auth_server)
    reg = registry_settings(settings, auth_server)
    try:
        async with running(create_registry(reg)) as registry, \
                running(create_sync(reg)) as sync, open_runtime(reg) as runtime:
            mine = await _connections(registry, s.mine)
            theirs = await _connections(registry, s.theirs)
            # The first app's connections (the user's and the company login's).
            due = utcnow() + timedelta(days=30)
            created = await registry.post(REVIEWS, headers=s.books, json={
                "name": "App 0 review", "filter": {"app": s.apps[0].client_id},
                "reviewer": "consenting_user", "due_at": due.isoformat(),
                "default_decision": "keep"})
            assert created.status_code == 201, created.text
            assert created.json()["item_count"] == 2
            rid = created.json()["id"]

            open_items = (await registry.get("/v1/me/access-reviews", headers=s.mine)).json()
            [item] = open_items["data"]
            assert item["connection_id"] == mine[s.apps[0].client_id]
            assert item["review_id"] == rid and item["decision"] is None
            [their_item] = (await registry.get("/v1/me/access-reviews",
                                               headers=s.theirs)).json()["data"]
            assert their_item["connection_id"] == theirs[s.apps[0].client_id]
            # Another user's item: 404, and nothing changes.
            stolen = await registry.post(
                f"/v1/me/access-reviews/items/{their_item['id']}/decision", headers=s.mine,
                json={"decision": "revoke", "reason": "not mine"})
            assert stolen.status_code == 404
            assert _status(auth_server, theirs[s.apps[0].client_id]) == "active"
            # The accountant may not decide a consenting-user review's item.
            assert (await registry.post(f"{REVIEWS}/{rid}/items/{item['id']}/decision",
                                        headers=s.books, json={"decision": "keep"})
                    ).status_code == 409

            # The user revokes their own: the token is refused on its next call.
            decided = await registry.post(
                f"/v1/me/access-reviews/items/{item['id']}/decision", headers=s.mine,
                json={"decision": "revoke", "reason": "I stopped using it"})
            assert decided.status_code == 200, decided.text
            assert (await sync.get("/v1/debtors", headers=bearer_of(s.tokens[0]))).status_code \
                == 401
            assert _revoke_events(auth_server, item["connection_id"])[0].data["reason"] == \
                "access_review"
            again = await registry.post(
                f"/v1/me/access-reviews/items/{item['id']}/decision", headers=s.mine,
                json={"decision": "keep"})
            assert again.status_code == 409
            assert (await registry.get("/v1/me/access-reviews", headers=s.mine)
                    ).json()["data"] == []

            # At the due date the default keeps the company login's connection.
            assert await run_review_defaults(runtime.async_session, runtime.redis,
                                             due + timedelta(seconds=1)) == 1
            assert _status(auth_server, theirs[s.apps[0].client_id]) == "active"
            assert (await sync.get("/v1/debtors", headers=bearer_of(s.other_tokens))
                    ).status_code == 200
            summary = (await registry.get(f"{REVIEWS}/{rid}", headers=s.books)).json()
            assert summary["status"] == "completed"
            assert summary["by_decision"] == {"keep": 1, "revoke": 1, "undecided": 0}
            assert (await registry.get("/v1/me/access-reviews", headers=s.theirs)
                    ).json()["data"] == []
            late = await registry.post(
                f"/v1/me/access-reviews/items/{their_item['id']}/decision", headers=s.theirs,
                json={"decision": "revoke", "reason": "too late"})
            assert late.status_code == 409
    finally:
        s.close()
