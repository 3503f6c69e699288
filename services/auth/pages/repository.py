"""Every query of the pages: an app's logo."""

from __future__ import annotations

import uuid

from sqlmodel import Session, col, select

from shared.models import App, AppLogo


def logo(session: Session, client_id: str) -> AppLogo | None:
    """The logo the app with this client_id registered, if any."""
    return session.exec(
        select(AppLogo).join(App, col(App.id) == AppLogo.app_id).where(App.client_id == client_id)
    ).first()


def has_logo(session: Session, app_id: uuid.UUID) -> bool:
    return session.get(AppLogo, app_id) is not None
