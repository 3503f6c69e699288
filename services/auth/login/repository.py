"""Every query of login: users by email or id, and the apps a login or logout is for."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlmodel import Session, col, select

from shared.models import App, User
from shared.policy.resolve import app_by_client_id


def user_by_email(session: Session, email: str) -> User | None:
    return session.exec(select(User).where(User.email == email)).first()


def app(session: Session, client_id: str) -> App | None:
    return session.exec(app_by_client_id(client_id)).first()


def apps(session: Session, client_ids: Sequence[str]) -> Sequence[App]:
    return session.exec(select(App).where(col(App.client_id).in_(client_ids))).all()


def user_active(session: Session, user_id: str) -> bool:
    """Whether the user exists and may sign in; False for an id that is not a UUID."""
    try:
        key = uuid.UUID(user_id)
    except ValueError:
        return False
    return bool(session.exec(select(User.active).where(User.id == key)).first())
