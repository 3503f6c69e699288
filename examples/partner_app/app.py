"""The example partner app: a tiny web app that links to Koppel, keeps a copy of the
employees it may read, and stops syncing a connection the moment it is revoked.

    PARTNER_CLIENT_ID=... PARTNER_CLIENT_SECRET=... uvicorn examples.partner_app.app:app --port 8500

Routes: `/` (what is linked and synced, as JSON), `/link` (start linking), `/callback`
(Koppel sends the browser back here), `/webhooks` (Koppel's signed events).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from examples.partner_app import webhooks
from examples.partner_app.koppel import Koppel, LinkFailed
from examples.partner_app.settings import Settings
from examples.partner_app.store import Store
from examples.partner_app.syncer import Syncer


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = Store(settings.data_dir)
        koppel = await run_in_threadpool(Koppel, settings, store)
        syncer = Syncer(koppel, store, settings.poll_seconds)
        await run_in_threadpool(webhooks.subscribe, koppel, store)
        syncer.start()
        app.state.store, app.state.koppel, app.state.syncer = store, koppel, syncer
        try:
            yield
        finally:
            await run_in_threadpool(syncer.stop)
            store.close()

    async def home(request: Request) -> Response:
        store: Store = request.app.state.store
        return JSONResponse({"connections": store.connections(),
                             "employees": store.employees()})

    async def link(request: Request) -> Response:
        return RedirectResponse(request.app.state.koppel.start_link(), status_code=303)

    async def callback(request: Request) -> Response:
        try:
            connection_id = await run_in_threadpool(request.app.state.koppel.finish_link,
                                                    str(request.url))
        except LinkFailed as error:
            return PlainTextResponse(f"Linking failed: {error}", status_code=400)
        request.app.state.syncer.wake()
        return PlainTextResponse(f"Linked: connection {connection_id}")

    async def receive(request: Request) -> Response:
        status = webhooks.receive(request.app.state.store, request.app.state.syncer,
                                  await request.body(), request.headers)
        return Response(status_code=status)

    return Starlette(lifespan=lifespan, routes=[
        Route("/", home), Route("/link", link), Route("/callback", callback),
        Route("/webhooks", receive, methods=["POST"]),
    ])


def __getattr__(name: str) -> Starlette:
    # `uvicorn examples.partner_app.app:app` builds the app from the environment.
    if name == "app":
        return create_app()
    raise AttributeError(name)
