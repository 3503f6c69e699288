"""App logos, served by Koppel so that pages load nothing from third parties."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlmodel import col, select

from services.auth.deps import run_authlib
from shared.errors import NotFound
from shared.models import App, AppLogo

router = APIRouter(tags=["pages"])


@router.get("/apps/{client_id}/logo", responses={200: {"content": {"image/png": {}}},
                                                  404: {"description": "no logo"}})
async def app_logo(client_id: str, request: Request) -> Response:
    """The logo an app registered, as fetched once at registration."""
    def load(ctx):
        return ctx.session.exec(
            select(AppLogo).join(App, col(App.id) == AppLogo.app_id)
            .where(App.client_id == client_id)
        ).first()

    logo = await run_authlib(request, load) if len(client_id) <= 80 else None
    if logo is None:
        raise NotFound("this app has no logo")
    return Response(logo.data, media_type=logo.content_type, headers={
        "Cache-Control": "public, max-age=3600",
        "ETag": f'"{logo.sha256}"',
        "Content-Security-Policy": "default-src 'none'; sandbox",
    })
