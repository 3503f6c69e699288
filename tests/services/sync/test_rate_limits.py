"""Request budgets of the sync API (docs/product.md 5.8): 429 with `Retry-After` and
`RateLimit` headers naming the limit that applied; an app's budget is counted per
environment, so one customer's users cannot spend it for another's (issue 14, finding 6)."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from services.sync import ratelimits
from shared.models import App, Connection
from tests.fixtures import factories as f
from tests.services.sync.conftest import Tokens
from tests.services.sync.worlds import Data


async def test_rate_limits_answer_429_with_retry_after_and_ratelimit_headers(
    sync_client: httpx.AsyncClient, tokens: Tokens, data: Data,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ratelimits, "PER_CALLER", 3)
    auth = tokens.connection(data.connection, data.app)
    answers = [await sync_client.get("/v1/debtors", headers=auth) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    window = ratelimits.WINDOW_S
    assert answers[0].headers["ratelimit-policy"] == (
        f'"app-environment";q={ratelimits.PER_APP};w={window}, "connection";q=3;w={window}')
    assert answers[0].headers["ratelimit"].startswith('"connection";r=2;')
    assert answers[2].headers["ratelimit"].startswith('"connection";r=0;')
    limited = answers[3]
    assert limited.headers["content-type"] == "application/problem+json"
    assert 1 <= int(limited.headers["retry-after"]) <= window
    assert limited.headers["ratelimit"].startswith('"connection";r=0;')
    # A fresh token of the same connection shares the spent budget.
    again = tokens.connection(data.connection, data.app)
    assert (await sync_client.get("/v1/debtors", headers=again)).status_code == 429


def _users_connections(sessions: sessionmaker[Session], app: App, users: int
                       ) -> list[Connection]:
    """Connections of `users` users of one new environment to `app`."""
    with sessions() as session, session.begin():
        environment = f.make_environment(session)
        company = f.make_company(session, f.make_debtor(session, environment))
        return [f.make_connection(session, f.make_user(session, environment, companies=[company]),
                                  app, companies=[company]) for _ in range(users)]


async def test_one_environment_cannot_spend_an_apps_budget_for_another(
    sync_client: httpx.AsyncClient, tokens: Tokens,
    committing_sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A public app used in environments A and B: A's users spending the app's budget
    leave B's calls answered, and the 429 names the app-per-environment limit."""
    monkeypatch.setattr(ratelimits, "PER_APP", 4)
    with committing_sessions() as session, session.begin():
        app = f.make_app(session, scopes=["company.info.read"])
    in_a, second_in_a = _users_connections(committing_sessions, app, 2)
    (in_b,) = _users_connections(committing_sessions, app, 1)
    first, second = tokens.connection(in_a, app), tokens.connection(second_in_a, app)
    spent = [await sync_client.get("/v1/debtors", headers=headers)
             for headers in (first, second, first, second)]
    assert [a.status_code for a in spent] == [200] * 4
    refused = await sync_client.get("/v1/debtors", headers=first)
    assert refused.status_code == 429
    assert (await sync_client.get("/v1/debtors", headers=second)).status_code == 429

    other = await sync_client.get("/v1/debtors", headers=tokens.connection(in_b, app))
    assert other.status_code == 200, other.text
    assert refused.headers["ratelimit"].startswith('"app-environment";r=0;')
    assert other.headers["ratelimit"].startswith('"app-environment";r=3;')
    assert '"app-environment";q=4;' in other.headers["ratelimit-policy"]
