"""Dynamic client registration (RFC 7591) and management (RFC 7592).

A partner registers with its initial access token; each app gets a registration access
token for later reads, updates and deletion. Both tokens and the client secret are
stored only as keyed digests; the secret and the registration token are shown once.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.registry.apps.metadata import ClientMetadata, RegistrationError
from services.registry.connections import service as connections
from shared.audit import Actor
from shared.db.types import utcnow
from shared.logos import LogoError, fetch_logo
from shared.models import App, AppLogo, AppStatus, Connection, ConnectionStatus, Partner
from shared.status import Subject
from shared.unit_of_work import unit_of_work
from shared.vault import TokenKind, new_token, token_digest


class InvalidToken(Exception):
    """The initial or registration access token is missing, wrong or revoked."""


async def partner_for(session: AsyncSession, key: bytes, token: str | None) -> Partner:
    if not token:
        raise InvalidToken
    digest = token_digest(key, token)
    stmt = select(Partner).where(Partner.initial_access_token_digest == digest)
    partner = (await session.exec(stmt)).first()
    if partner is None:
        raise InvalidToken
    return partner


async def app_for(session: AsyncSession, key: bytes, client_id: str, token: str | None) -> App:
    """The app whose registration access token this is (and whose client_id matches)."""
    if not token:
        raise InvalidToken
    digest = token_digest(key, token)
    app = (await session.exec(
        select(App).where(App.registration_access_token_digest == digest))).first()
    if app is None or not secrets.compare_digest(app.client_id, client_id):
        raise InvalidToken
    return app


def _rotate_registration_token(key: bytes, app: App) -> str:
    """A new registration access token for the app; the one before stops working."""
    token = new_token(TokenKind.REGISTRATION_ACCESS_TOKEN)
    app.registration_access_token_digest = token_digest(key, token)
    return token


def _secrets(key: bytes, app: App, metadata: ClientMetadata) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    if metadata.needs_secret:
        secret = new_token(TokenKind.CLIENT_SECRET)
        app.client_secret_digest = token_digest(key, secret)
        shown["client_secret"] = secret
    else:
        app.client_secret_digest = None
    return shown


async def _logo(uri: str | None, allow_loopback: bool) -> tuple[str, bytes, str] | None:
    if not uri:
        return None
    try:
        return await fetch_logo(uri, allow_loopback=allow_loopback)
    except LogoError as exc:
        raise RegistrationError("invalid_client_metadata", str(exc)) from None


async def _store_logo(session: AsyncSession, app: App, uri: str | None,
                      logo: tuple[str, bytes, str] | None) -> None:
    """Keep the fetched logo (or drop the old one when the app has none now)."""
    existing = await session.get(AppLogo, app.id)
    if logo is None:
        if existing is not None:
            await session.delete(existing)
        return
    content_type, data, digest = logo
    row = existing or AppLogo(app_id=app.id, content_type=content_type, data=data,
                              sha256=digest, source_uri=uri or "")
    row.content_type, row.data, row.sha256, row.source_uri = content_type, data, digest, uri or ""
    row.fetched_at = utcnow()
    session.add(row)


async def register(session: AsyncSession, key: bytes, partner: Partner,
                   metadata: ClientMetadata, *, allow_loopback: bool = False,
                   ) -> tuple[App, dict[str, Any]]:
    """A new app of the partner; returns it and what is shown only now. Its logo is
    fetched once, through the SSRF guard, and served by Koppel from then on."""
    logo = await _logo(metadata.fields.get("logo_uri"), allow_loopback)
    app = App(client_id=f"kp_{secrets.token_urlsafe(18)}", partner_id=partner.id,
              first_party=False, publisher=partner.name, **metadata.fields)
    shown = _secrets(key, app, metadata)
    registration_token = _rotate_registration_token(key, app)
    session.add(app)
    await session.flush()
    await _store_logo(session, app, app.logo_uri, logo)
    return app, {**shown, "registration_access_token": registration_token}


async def update(session: AsyncSession, key: bytes, app: App, body: dict[str, Any],
                 metadata: ClientMetadata, *, allow_loopback: bool = False) -> dict[str, Any]:
    """RFC 7592 update: the request replaces the metadata. A secret is issued when the
    client turns confidential, and dropped when it no longer uses one. The registration
    access token rotates (RFC 7592 section 3): the answer carries the new one and the
    old one stops working."""
    if body.get("client_id") != app.client_id:
        raise RegistrationError("invalid_client_metadata", "client_id must match the client")
    had_secret = app.client_secret_digest is not None
    if "client_secret" in body and not (
        app.client_secret_digest is not None and isinstance(body["client_secret"], str)
        and secrets.compare_digest(token_digest(key, body["client_secret"]),
                                   app.client_secret_digest)
    ):
        raise RegistrationError("invalid_client_metadata", "client_secret does not match")
    new_logo_uri = metadata.fields.get("logo_uri")
    refetch = new_logo_uri != app.logo_uri or await session.get(AppLogo, app.id) is None
    logo = await _logo(new_logo_uri, allow_loopback) if refetch else None
    for name, value in metadata.fields.items():
        setattr(app, name, value)
    shown: dict[str, Any] = {}
    if metadata.needs_secret and not had_secret:
        shown = _secrets(key, app, metadata)
    elif not metadata.needs_secret:
        app.client_secret_digest = None
    shown["registration_access_token"] = _rotate_registration_token(key, app)
    app.updated_at = utcnow()
    session.add(app)
    await session.flush()
    if refetch:
        await _store_logo(session, app, new_logo_uri, logo)
    return shown


async def delete(session: AsyncSession, app: App) -> None:
    """RFC 7592 delete: the client can no longer authenticate, and its connections are
    revoked (the row stays, for the audit trail)."""
    stmt = select(Connection).where(Connection.app_id == app.id,
                                    Connection.status != ConnectionStatus.REVOKED)
    actor = Actor("app", app.client_id)
    for connection in (await session.exec(stmt)).all():
        await connections.revoke(session, connection, actor, f"app:{app.client_id}",
                                 "the app was deleted")
    app.status = AppStatus.SUSPENDED
    app.client_secret_digest = None
    app.registration_access_token_digest = None
    app.redirect_uris = []
    app.updated_at = utcnow()
    session.add(app)
    unit_of_work(session).publish_status(Subject.APP, app.client_id, False)
    await session.flush()
