"""An app blocked by the environment's policy cannot be linked there."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlmodel import select

from shared.models import App, EnvironmentAppPolicy
from tests.fixtures.auth_server import AuthServer, Client
from tests.services.auth.support import AuthRequest, Browser, User


def test_blocked_app_gets_access_denied_and_no_connection(
    auth_server: AuthServer, browser: Callable[..., Browser], new_user: Callable[..., User],
    new_app: Callable[..., Client], demo_tree,
) -> None:
    app, user = new_app(), new_user()
    with auth_server.sessions() as session, session.begin():
        row = session.exec(select(App).where(App.client_id == app.client_id)).one()
        session.add(EnvironmentAppPolicy(environment_id=uuid.UUID(demo_tree.environment_id),
                                         app_id=row.id, state="blocked"))
    linked = browser().link(AuthRequest(app), user)
    assert linked.params["error"] == "access_denied"
    assert "blocked" in linked.params["error_description"]
    assert "code" not in linked.params and linked.pages == ["login"]
