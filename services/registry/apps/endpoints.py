"""`/oauth2/register`: RFC 7591 registration and RFC 7592 management; errors as the RFCs
say (`{"error", "error_description"}`, 401 with `WWW-Authenticate` for a bad token)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, Security
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.registry.apps import metadata as meta
from services.registry.apps import service
from services.registry.apps.schemas import (
    ClientInformation,
    ClientMetadataIn,
    ClientUpdateIn,
    RegistrationErrorOut,
    body,
)
from services.registry.deps import RuntimeDep, SessionDep
from shared.body_limits import KiB, body_limit, check_json
from shared.policy.dependency import declare

router = APIRouter(prefix="/oauth2/register", tags=["dynamic client registration"])
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# RFC 7591 metadata with an inline `jwks` (a few RSA keys with certificate chains).
MAX_BODY = body_limit(64 * KiB)


def _error(status: int, error: str, description: str, headers: dict | None = None
           ) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description},
                        status_code=status, headers={**NO_STORE, **(headers or {})})


def _unauthorized() -> JSONResponse:
    return _error(401, "invalid_token", "the access token is missing, wrong or revoked",
                  {"WWW-Authenticate": 'Bearer error="invalid_token"'})


# The bearer schemes, for the OpenAPI document; a missing or other scheme is a 401 below.
_initial = HTTPBearer(scheme_name="InitialAccessToken", auto_error=False,
                      description="The partner's initial access token (koppel partner create)")
_registration = HTTPBearer(scheme_name="RegistrationAccessToken", auto_error=False,
                           description="The app's registration access token (RFC 7592)")
Credentials = HTTPAuthorizationCredentials | None
InitialToken = Annotated[Credentials, Security(_initial)]
RegistrationToken = Annotated[Credentials, Security(_registration)]
ERROR = {"model": RegistrationErrorOut}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {**ERROR, "description": "invalid_redirect_uri or invalid_client_metadata"},
    401: {**ERROR, "description": "the bearer token is missing, wrong or revoked"},
}


def _token(credentials: Credentials) -> str | None:
    return credentials.credentials.strip() or None if credentials else None


async def _body(request: Request) -> Any:
    raw = await request.body()
    try:
        check_json(raw)  # also when the media type does not say JSON
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise meta.RegistrationError("invalid_client_metadata",
                                     "the body must be JSON") from None


def _location(request: Request, runtime, client_id: str) -> str:
    return f"{runtime.settings.registry_url.rstrip('/')}/oauth2/register/{client_id}"


@router.post("", status_code=201, openapi_extra={**body(ClientMetadataIn), **MAX_BODY},
             dependencies=[Depends(declare("registration.create"))],
             responses={201: {"model": ClientInformation}, **ERRORS})
async def register_client(request: Request, session: SessionDep, runtime: RuntimeDep,
                          token: InitialToken) -> Response:
    """Register an app (RFC 7591) with the partner's initial access token as bearer.
    The client secret and the registration access token are shown only in this answer."""
    key = runtime.keyring.digest_key
    try:
        partner = await service.partner_for(session, key, _token(token))
    except service.InvalidToken:
        return _unauthorized()
    try:
        metadata = meta.validate(await _body(request))
        app, shown = await service.register(
            session, key, partner, metadata,
            allow_loopback=runtime.settings.webhooks_allow_loopback,
        )
    except meta.RegistrationError as exc:
        await session.rollback()
        return _error(400, exc.error, exc.description)
    body = {**meta.document(app), **shown,
            "registration_client_uri": _location(request, runtime, app.client_id)}
    return JSONResponse(body, status_code=201, headers=NO_STORE)


@router.get("/{client_id}", responses={200: {"model": ClientInformation}, 401: ERRORS[401]},
            dependencies=[Depends(declare("registration.read"))])
async def read_client(client_id: str, request: Request, session: SessionDep,
                      runtime: RuntimeDep, token: RegistrationToken) -> Response:
    """The app's registered metadata (RFC 7592), with its registration access token."""
    try:
        app = await service.app_for(session, runtime.keyring.digest_key, client_id,
                                    _token(token))
    except service.InvalidToken:
        return _unauthorized()
    body = {**meta.document(app),
            "registration_client_uri": _location(request, runtime, app.client_id)}
    return JSONResponse(body, headers=NO_STORE)


@router.put("/{client_id}", openapi_extra={**body(ClientUpdateIn), **MAX_BODY},
            dependencies=[Depends(declare("registration.update"))],
            responses={200: {"model": ClientInformation}, **ERRORS})
async def update_client(client_id: str, request: Request, session: SessionDep,
                        runtime: RuntimeDep, token: RegistrationToken) -> Response:
    """Replace the app's metadata (RFC 7592). The answer carries a new registration
    access token, and the one used for this call stops working; a new secret appears
    only if the client becomes confidential."""
    key = runtime.keyring.digest_key
    try:
        app = await service.app_for(session, key, client_id, _token(token))
    except service.InvalidToken:
        return _unauthorized()
    try:
        body = await _body(request)
        metadata = meta.validate(body)
        shown = await service.update(
            session, key, app, body, metadata,
            allow_loopback=runtime.settings.webhooks_allow_loopback,
        )
    except meta.RegistrationError as exc:
        await session.rollback()
        return _error(400, exc.error, exc.description)
    body = {**meta.document(app), **shown,
            "registration_client_uri": _location(request, runtime, app.client_id)}
    return JSONResponse(body, headers=NO_STORE)


@router.delete("/{client_id}", status_code=204, responses={401: ERRORS[401]},
               dependencies=[Depends(declare("registration.delete"))])
async def delete_client(client_id: str, session: SessionDep, runtime: RuntimeDep,
                        token: RegistrationToken) -> Response:
    """Delete the app (RFC 7592): it can no longer authenticate and every connection to
    it is revoked."""
    try:
        app = await service.app_for(session, runtime.keyring.digest_key, client_id,
                                    _token(token))
    except service.InvalidToken:
        return _unauthorized()
    await service.delete(session, app)
    return Response(status_code=204, headers=NO_STORE)
