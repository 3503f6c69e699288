"""`koppel app ...`: suspend or resume a partner app everywhere (docs/product.md sections
3 and 8), and place the SaaS's own first-party apps.

A suspension suspends every live connection of the app (event `connection.suspended`,
audited per environment) and its tokens fail on the very next call; resuming restores
the connections that nothing else holds suspended. Revoked connections stay revoked.

A first-party app is bound to one environment (a tenant's own frontend or integration)
or platform-wide (the SaaS's own backend, `create-platform`); see shared/policy/apps.py.
One that is neither (an app older than the binding) stays suspended until `bind` or
`make-platform` places it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated

import typer
from sqlmodel.ext.asyncio.session import AsyncSession

from cli.context import ensure_sqlite_dir, flush_after_commit, load_settings
from cli.demo_data import slug_for
from cli.output import CliError, emit_json, handle_errors, stderr, stdout
from services.registry.apps.metadata import RegistrationError, check_uri
from services.registry.connections.lifecycle import reconcile
from shared.audit import Actor
from shared.config import Settings
from shared.db import utcnow
from shared.db.engine import async_session_factory, create_async_db_engine
from shared.models import App, AppStatus, Environment
from shared.policy.resolve import app_by_client_id
from shared.scopes import FIRST_PARTY_APP_SCOPES
from shared.status import Subject
from shared.unit_of_work import UnitOfWork, unit_of_work
from shared.vault import TokenKind, load_keyring, new_token, token_digest

app = typer.Typer(help="Partner apps and the SaaS's own first-party apps.",
                  no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
ClientId = Annotated[str, typer.Argument(metavar="CLIENT_ID", help="The app's client_id.")]
PLATFORM_CLIENT_PREFIX = "koppel-platform-"
PLATFORM_GRANT_TYPES = ["client_credentials", "authorization_code", "refresh_token"]

Change = Callable[[AsyncSession, App], Awaitable[dict]]


async def change_app(settings: Settings, client_id: str, change: Change) -> dict:
    """Run `change` on the app in one transaction; publish status changes after it."""
    ensure_sqlite_dir(settings)
    engine = create_async_db_engine(settings.resolved_database_url, pool_size=1)
    try:
        async with async_session_factory(engine)() as session:
            row = (await session.exec(app_by_client_id(client_id))).first()
            if row is None:
                raise CliError(f"no app with client_id {client_id!r}")
            result = await change(session, row)
            await session.commit()
    finally:
        await engine.dispose()
    await flush_after_commit(settings, UnitOfWork.detach(session))
    return result


async def set_app_status(settings: Settings, client_id: str, status: AppStatus) -> dict:
    """Change the app's status and reconcile its connections; publish after the commit."""

    async def change(session: AsyncSession, row: App) -> dict:
        if row.first_party:
            raise CliError("first-party apps are not suspended this way")
        previous = row.status
        row.status, row.updated_at = status, utcnow()
        session.add(row)
        await session.flush()
        counts = await reconcile(session, Actor("operator"), app_id=row.id)
        unit_of_work(session).publish_status(Subject.APP, client_id,
                                             status == AppStatus.ACTIVE)
        return {"client_id": client_id, "status": status.value, "previous": str(previous),
                "connections": counts}

    return await change_app(settings, client_id, change)


def _run(client_id: str, status: AppStatus, as_json: bool) -> None:
    result = asyncio.run(set_app_status(load_settings(), client_id, status))
    if as_json:
        emit_json(result)
        return
    counts = result["connections"]
    stdout().print(f"app {client_id}: {result['previous']} -> {result['status']}; "
                   f"connections suspended {counts['suspended']}, resumed {counts['resumed']}, "
                   f"expired {counts['expired']}")


@app.command("suspend")
@handle_errors
def suspend(client_id: ClientId, as_json: JsonOption = False) -> None:
    """Suspend an app: its connections are suspended and its tokens stop working."""
    _run(client_id, AppStatus.SUSPENDED, as_json)


@app.command("resume")
@handle_errors
def resume(client_id: ClientId, as_json: JsonOption = False) -> None:
    """Resume a suspended app and the connections it held suspended."""
    _run(client_id, AppStatus.ACTIVE, as_json)


def _placement(row: App) -> str:
    if row.platform:
        return "platform-wide"
    if row.environment_id is not None:
        return f"bound to environment {row.environment_id}"
    return "not placed"


async def place_app(settings: Settings, client_id: str,
                    environment_id: uuid.UUID | None) -> dict:
    """Bind a first-party app to `environment_id`, or make it platform-wide (None), and
    activate it. Only an app that is not placed yet can be placed: moving an app
    between environments, or widening a tenant's app to the platform, is refused."""

    async def change(session: AsyncSession, row: App) -> dict:
        if not row.first_party:
            raise CliError("a third-party app reaches what its connections grant; it is "
                           "not bound or made platform-wide")
        if environment_id is not None and await session.get(Environment,
                                                            environment_id) is None:
            raise CliError(f"no environment {environment_id}")
        wanted = (environment_id is None, environment_id)
        if (row.platform, row.environment_id) != wanted and (
                row.platform or row.environment_id is not None):
            raise CliError(f"app {client_id} is already {_placement(row)}; it is not moved")
        previous = row.status
        row.platform, row.environment_id = wanted
        row.status, row.updated_at = AppStatus.ACTIVE, utcnow()
        session.add(row)
        await session.flush()
        unit_of_work(session).publish_status(Subject.APP, client_id, True)
        return {"client_id": client_id, "platform": row.platform,
                "environment_id": str(environment_id) if environment_id else None,
                "status": row.status.value, "previous": str(previous)}

    return await change_app(settings, client_id, change)


def _place(client_id: str, environment_id: uuid.UUID | None, as_json: bool) -> None:
    result = asyncio.run(place_app(load_settings(), client_id, environment_id))
    if as_json:
        emit_json(result)
        return
    where = (f"bound to environment {result['environment_id']}" if result["environment_id"]
             else "platform-wide")
    stdout().print(f"app {client_id}: {where}; {result['previous']} -> {result['status']}")


@app.command("bind")
@handle_errors
def bind(
    client_id: ClientId,
    environment_id: Annotated[str, typer.Argument(metavar="ENVIRONMENT_ID",
                                                  help="The environment's id.")],
    as_json: JsonOption = False,
) -> None:
    """Bind a first-party app to one environment and activate it: its logins, tokens
    and provisioning act inside that environment only."""
    try:
        environment = uuid.UUID(environment_id)
    except ValueError:
        raise CliError(f"ENVIRONMENT_ID must be an id (UUID), not {environment_id!r}") from None
    _place(client_id, environment, as_json)


@app.command("make-platform")
@handle_errors
def make_platform(client_id: ClientId, as_json: JsonOption = False) -> None:
    """Make a first-party app platform-wide and activate it: it reaches every
    environment (the SaaS's own backend only)."""
    _place(client_id, None, as_json)


async def create_platform_app(settings: Settings, name: str, redirect_uris: list[str]) -> dict:
    """A new platform-wide first-party app; returns its client secret (shown once)."""
    client_id = f"{PLATFORM_CLIENT_PREFIX}{slug_for(name)}"
    secret = new_token(TokenKind.CLIENT_SECRET)
    digest = token_digest(load_keyring(settings).digest_key, secret)
    ensure_sqlite_dir(settings)
    engine = create_async_db_engine(settings.resolved_database_url, pool_size=1)
    try:
        async with async_session_factory(engine)() as session:
            if (await session.exec(app_by_client_id(client_id))).first():
                raise CliError(f"an app with client_id {client_id} exists: choose another name")
            row = App(client_id=client_id, name=name, publisher="Koppel", first_party=True,
                      platform=True, redirect_uris=redirect_uris,
                      scopes=list(FIRST_PARTY_APP_SCOPES), grant_types=PLATFORM_GRANT_TYPES,
                      response_types=["code"], token_endpoint_auth_method="client_secret_basic",
                      client_secret_digest=digest)
            session.add(row)
            await session.commit()
    finally:
        await engine.dispose()
    return {"client_id": client_id, "client_secret": secret, "name": name, "platform": True,
            "redirect_uris": redirect_uris, "grant_types": PLATFORM_GRANT_TYPES,
            "scopes": list(FIRST_PARTY_APP_SCOPES)}


@app.command("create-platform")
@handle_errors
def create_platform(
    name: Annotated[str, typer.Argument(help="The app's name.")],
    redirect_uris: Annotated[list[str] | None, typer.Option(
        "--redirect-uri", help="A redirect URI for its logins (repeat it).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a platform-wide first-party app (the SaaS's own backend): a confidential
    client with every first-party scope; prints its client_id and client_secret once."""
    name = name.strip()
    if not name:
        raise CliError("the name is empty")
    try:
        uris = [check_uri(uri, "--redirect-uri", redirect=True) for uri in redirect_uris or []]
    except RegistrationError as exc:
        raise CliError(exc.description) from None
    result = asyncio.run(create_platform_app(load_settings(), name, uris))
    if as_json:
        emit_json(result)
        return
    console = stdout()
    console.print(f"platform-wide app {result['name']}", highlight=False)
    console.print(f"client_id: {result['client_id']}", highlight=False)
    console.print(f"client_secret: {result['client_secret']}", highlight=False)
    stderr().print("the client secret is shown only now: store it safely")
