"""Every query of the challenge API: the app of a request and the user it is about."""

from __future__ import annotations

import uuid

from sqlmodel import Session

from shared.models import App, User
from shared.policy.resolve import app_by_client_id


def app(session: Session, client_id: str) -> App | None:
    return session.exec(app_by_client_id(client_id)).first()


def user(session: Session, user_id: str) -> User | None:
    return session.get(User, uuid.UUID(user_id))
