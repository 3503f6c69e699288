"""`/v1/webhooks`: a partner app's own webhook endpoints and their delivery log
(client credentials with `webhooks.manage`; another app's ids answer 404)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from services.sync.deps import RuntimeDep, SessionDep, webhook_manager
from services.sync.ratelimits import rate_limit
from services.sync.webhooks import schemas, service
from shared.etag import Guarded, Version, Versioned
from shared.pagination import DEFAULT_LIMIT, LimitQuery, after_id, id_cursor, page
from shared.policy.dependency import AppCaller
from shared.ssrf import check_url

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], dependencies=[Depends(rate_limit)])
CanCreate = Annotated[AppCaller, webhook_manager("create")]
CanList = Annotated[AppCaller, webhook_manager("list")]
CanRead = Annotated[AppCaller, webhook_manager("read")]
CanUpdate = Annotated[AppCaller, webhook_manager("update")]
CanDelete = Annotated[AppCaller, webhook_manager("delete")]
CanDisable = Annotated[AppCaller, webhook_manager("disable")]
CanEnable = Annotated[AppCaller, webhook_manager("enable")]
CanRotateSecret = Annotated[AppCaller, webhook_manager("rotate_secret")]
CanDeliveriesList = Annotated[AppCaller, webhook_manager("deliveries.list")]
CanRedeliver = Annotated[AppCaller, webhook_manager("redeliver")]
CanTest = Annotated[AppCaller, webhook_manager("test")]
CanKeys = Annotated[AppCaller, webhook_manager("keys")]
CanRotateKey = Annotated[AppCaller, webhook_manager("rotate_key")]
CanRecover = Annotated[AppCaller, webhook_manager("recover")]


def _checker(request: Request, runtime: RuntimeDep):
    resolver = getattr(request.app.state, "ssrf_resolver", None)
    allow = runtime.settings.webhooks_allow_loopback

    async def check(url: str):
        return await check_url(url, allow_loopback=allow, resolver=resolver)

    return check


@router.post("", status_code=201, response_model=schemas.EndpointCreated)
async def create_endpoint(payload: schemas.EndpointCreate, caller: CanCreate,
                          session: SessionDep, runtime: RuntimeDep, request: Request,
                          version: Versioned):
    """Subscribe a URL to event types. The signing secret is in this answer only; the
    ETag is the endpoint's (as `GET` shows it)."""
    created = await service.create(session, caller, payload, box=runtime.box,
                                   check=_checker(request, runtime))
    version.tag(schemas.EndpointOut(**created.model_dump(exclude={"secret"})))
    return created


@router.get("", response_model=schemas.EndpointList)
async def list_endpoints(caller: CanList, session: SessionDep, runtime: RuntimeDep,
                         request: Request, response: Response,
                         limit: LimitQuery = DEFAULT_LIMIT, cursor: str | None = None):
    """The calling app's endpoints, oldest first."""
    after = after_id(runtime.keyring.digest_key, "webhooks", cursor)
    rows = await service.list_endpoints(session, caller, after, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = id_cursor(runtime.keyring.digest_key, "webhooks", rows[-1].id) if more else None
    return page(request, response, [service.out(r) for r in rows], next_cursor)


@router.get("/keys", response_model=schemas.KeySet)
async def key_set(caller: CanKeys, session: SessionDep):
    """The public keys that verify the calling app's `v1a` (Ed25519) signatures: every
    ed25519 endpoint's current key, and its previous one while a rotation's overlap
    lasts, as `whpk_` text and as a JWK."""
    return await service.key_set(session, caller)


@router.get("/{endpoint_id}", response_model=schemas.EndpointOut)
async def get_endpoint(endpoint_id: uuid.UUID, caller: CanRead, session: SessionDep,
                       version: Versioned):
    """One endpoint of the calling app, with an ETag."""
    return version.tag(service.out(await service.get(session, caller, endpoint_id)))


async def _check(session, caller: AppCaller, endpoint_id: uuid.UUID, version: Version) -> None:
    """412 unless `If-Match` names the endpoint as it is now (locked for the write)."""
    if not version.wanted:
        return
    endpoint = await service.get(session, caller, endpoint_id, for_update=True)
    version.check(service.out(endpoint), "webhook endpoint")


@router.patch("/{endpoint_id}", response_model=schemas.EndpointOut)
async def update_endpoint(endpoint_id: uuid.UUID, payload: schemas.EndpointUpdate,
                          caller: CanUpdate, session: SessionDep, runtime: RuntimeDep,
                          request: Request, version: Guarded):
    """Change the URL, event types, description, signature scheme (switching to
    `ed25519` makes a key pair, if it has none), ordering or rate, or disable/enable
    (`status`)."""
    await _check(session, caller, endpoint_id, version)
    endpoint = await service.update(session, caller, endpoint_id, payload,
                                    check=_checker(request, runtime), box=runtime.box)
    return version.tag(service.out(endpoint))


@router.delete("/{endpoint_id}", status_code=204)
async def delete_endpoint(endpoint_id: uuid.UUID, caller: CanDelete, session: SessionDep,
                          version: Guarded):
    """Remove the endpoint and its delivery log."""
    await _check(session, caller, endpoint_id, version)
    await service.delete(session, caller, endpoint_id)
    return Response(status_code=204)


@router.post("/{endpoint_id}/disable", response_model=schemas.EndpointOut)
async def disable_endpoint(endpoint_id: uuid.UUID, caller: CanDisable, session: SessionDep,
                           version: Guarded):
    """Stop deliveries to the endpoint."""
    await _check(session, caller, endpoint_id, version)
    update = schemas.EndpointUpdate(status="disabled")
    return version.tag(service.out(await service.update(session, caller, endpoint_id, update,
                                                        check=_no_check)))


@router.post("/{endpoint_id}/enable", response_model=schemas.EndpointOut)
async def enable_endpoint(endpoint_id: uuid.UUID, caller: CanEnable, session: SessionDep,
                          version: Guarded):
    """Resume deliveries to the endpoint (also after Koppel disabled it)."""
    await _check(session, caller, endpoint_id, version)
    update = schemas.EndpointUpdate(status="active")
    return version.tag(service.out(await service.update(session, caller, endpoint_id, update,
                                                        check=_no_check)))


async def _no_check(url: str) -> None:
    return None


@router.post("/{endpoint_id}/rotate-secret", response_model=schemas.SecretOut)
async def rotate_secret(endpoint_id: uuid.UUID, caller: CanRotateSecret, session: SessionDep,
                        runtime: RuntimeDep, version: Guarded,
                        payload: schemas.RotateSecret | None = None):
    """A new signing secret (shown once). The old one keeps signing beside it for
    `overlap_seconds` (default a day), so receivers can switch without losing messages.
    The ETag is the endpoint's after the rotation."""
    await _check(session, caller, endpoint_id, version)
    rotated = await service.rotate_secret(session, caller, endpoint_id,
                                          payload or schemas.RotateSecret(), box=runtime.box)
    version.tag(service.out(await service.get(session, caller, endpoint_id)))
    return rotated


@router.post("/{endpoint_id}/rotate-key", response_model=schemas.KeyOut)
async def rotate_key(endpoint_id: uuid.UUID, caller: CanRotateKey, session: SessionDep,
                     runtime: RuntimeDep, version: Guarded,
                     payload: schemas.RotateSecret | None = None):
    """A new Ed25519 key pair for an `ed25519` endpoint (409 for an HMAC one). The old
    private key keeps signing beside it for `overlap_seconds` (default a day): fetch the
    new public key (here, `GET` or the key set) before the overlap ends. The private key
    is never shown. The ETag is the endpoint's after the rotation."""
    await _check(session, caller, endpoint_id, version)
    rotated = await service.rotate_key(session, caller, endpoint_id,
                                       payload or schemas.RotateSecret(), box=runtime.box)
    version.tag(service.out(await service.get(session, caller, endpoint_id)))
    return rotated


@router.post("/{endpoint_id}/recover", status_code=202, response_model=schemas.Recovered)
async def recover(endpoint_id: uuid.UUID, payload: schemas.Recover, caller: CanRecover,
                  session: SessionDep):
    """Send again every failed delivery of the endpoint created at or after `since`, one
    more attempt each, one at a time in their original order, with their own
    `webhook-id`s. Deliveries dropped because the app may no longer see their event are
    not resent. 409 while the endpoint is disabled (enable it first)."""
    count = await service.recover(session, caller, endpoint_id, payload.since)
    return schemas.Recovered(recovered=count)


@router.get("/{endpoint_id}/deliveries", response_model=schemas.DeliveryList)
async def list_deliveries(endpoint_id: uuid.UUID, caller: CanDeliveriesList, session: SessionDep,
                          runtime: RuntimeDep, request: Request, response: Response,
                          limit: LimitQuery = DEFAULT_LIMIT, cursor: str | None = None):
    """The endpoint's deliveries, newest first, each with its attempts (status, latency,
    response code, error)."""
    before = after_id(runtime.keyring.digest_key, "deliveries", cursor)
    rows = await service.deliveries(session, caller, endpoint_id, before, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = (id_cursor(runtime.keyring.digest_key, "deliveries", rows[-1].id)
                   if more else None)
    return page(request, response, rows, next_cursor)


@router.post("/{endpoint_id}/deliveries/{delivery_id}/redeliver", status_code=202,
             response_model=schemas.Queued)
async def redeliver(endpoint_id: uuid.UUID, delivery_id: uuid.UUID, caller: CanRedeliver,
                    session: SessionDep):
    """Send a delivery again now, with the same `webhook-id`."""
    delivery = await service.redeliver(session, caller, endpoint_id, delivery_id)
    return schemas.Queued(delivery_id=delivery.id)


@router.post("/{endpoint_id}/test", status_code=202, response_model=schemas.Queued)
async def send_test(endpoint_id: uuid.UUID, caller: CanTest, session: SessionDep):
    """Queue a `webhook.test` message to the endpoint."""
    delivery = await service.send_test(session, caller, endpoint_id)
    return schemas.Queued(delivery_id=delivery.id)
