"""`koppel app suspend|resume CLIENT_ID`: stop or restart an app everywhere (SPEC 3, 8).

A suspension suspends every live connection of the app (event `connection.suspended`,
audited per environment) and its tokens fail on the very next call; resuming restores
the connections that nothing else holds suspended. Revoked connections stay revoked.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from sqlmodel import select

from cli.context import ensure_sqlite_dir, flush_after_commit, load_settings
from cli.output import CliError, emit_json, handle_errors, stdout
from services.registry.connections.lifecycle import reconcile
from shared.audit import Actor
from shared.config import Settings
from shared.db import utcnow
from shared.db.engine import async_session_factory, create_async_db_engine
from shared.models import App, AppStatus
from shared.status import Subject
from shared.unit_of_work import UnitOfWork, unit_of_work

app = typer.Typer(help="Partner apps.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
ClientId = Annotated[str, typer.Argument(metavar="CLIENT_ID", help="The app's client_id.")]


async def set_app_status(settings: Settings, client_id: str, status: AppStatus) -> dict:
    """Change the app's status and reconcile its connections; publish after the commit."""
    ensure_sqlite_dir(settings)
    engine = create_async_db_engine(settings.resolved_database_url, pool_size=1)
    try:
        async with async_session_factory(engine)() as session:
            row = (await session.exec(select(App).where(App.client_id == client_id))).first()
            if row is None:
                raise CliError(f"no app with client_id {client_id!r}")
            if row.first_party:
                raise CliError("first-party apps are not suspended this way")
            previous = row.status
            row.status, row.updated_at = status, utcnow()
            session.add(row)
            await session.flush()
            counts = await reconcile(session, Actor("operator"), app_id=row.id)
            unit_of_work(session).publish_status(Subject.APP, client_id,
                                                 status == AppStatus.ACTIVE)
            await session.commit()
    finally:
        await engine.dispose()
    await flush_after_commit(settings, UnitOfWork.detach(session))
    return {"client_id": client_id, "status": status.value, "previous": str(previous),
            "connections": counts}


def _run(client_id: str, status: AppStatus, as_json: bool) -> None:
    result = asyncio.run(set_app_status(load_settings(), client_id, status))
    if as_json:
        emit_json(result)
        return
    counts = result["connections"]
    stdout().print(f"app {client_id}: {result['previous']} -> {result['status']}; "
                   f"connections suspended {counts['suspended']}, resumed {counts['resumed']}")


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
