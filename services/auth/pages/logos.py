"""App logos, served by Koppel so that pages load nothing from third parties."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.auth.deps import run_authlib
from services.auth.pages import repository
from shared.errors import NotFound

router = APIRouter(tags=["pages"])


@router.get("/apps/{client_id}/logo", responses={200: {"content": {"image/png": {}}},
                                                  404: {"description": "no logo"}})
async def app_logo(client_id: str, request: Request) -> Response:
    """The logo an app registered, as fetched once at registration."""
    logo = (
        await run_authlib(request, lambda ctx: repository.logo(ctx.session, client_id))
        if len(client_id) <= 80 else None
    )
    if logo is None:
        raise NotFound("this app has no logo")
    return Response(logo.data, media_type=logo.content_type, headers={
        "Cache-Control": "public, max-age=3600",
        "ETag": f'"{logo.sha256}"',
        "Content-Security-Policy": "default-src 'none'; sandbox",
    })
