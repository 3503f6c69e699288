"""The public event catalogue: `GET /v1/event-types`, and the `webhooks` section of sync's
OpenAPI document, both from shared/events.py."""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from pydantic import BaseModel, Field

from shared.events import CATALOGUE, SUBSCRIBABLE, EventType
from shared.policy.dependency import declare

router = APIRouter(tags=["event catalogue"])


class EventTypeOut(BaseModel):
    name: str
    description: str
    scopes: list[str] = Field(description="an app needs one of these (or the write scope "
                              "that implies it) to receive the event; empty: every app with "
                              "a connection the event concerns receives it")
    subscribable: bool = Field(description="whether a webhook endpoint can subscribe to it")
    schema_: dict[str, Any] = Field(alias="schema", description="JSON Schema of the body")


class EventTypeList(BaseModel):
    data: list[EventTypeOut]


def _out(event: EventType) -> EventTypeOut:
    return EventTypeOut(name=event.name, description=event.description, scopes=event.scopes,
                        subscribable=event.name in SUBSCRIBABLE, schema=event.schema())


@cache
def _event_types() -> EventTypeList:
    """Built on the first call (the schemas are generated once), not at import."""
    return EventTypeList(data=[_out(event) for event in CATALOGUE.values()])


@router.get("/v1/event-types", response_model=EventTypeList,
            dependencies=[Depends(declare("event_types.list"))])
async def list_event_types() -> EventTypeList:
    """Every event type Koppel sends to webhooks: what it means, the scope an app needs to
    receive it and the JSON Schema of its body. Public: no token needed."""
    return _event_types()


def add_webhooks(app: FastAPI) -> None:
    """One entry per event type in the OpenAPI document's `webhooks` section (OpenAPI 3.1):
    the request Koppel sends to a subscribed endpoint."""
    for event in CATALOGUE.values():
        async def receive(message) -> None:
            """Documentation only: Koppel sends this; the partner's endpoint receives it."""

        receive.__annotations__ = {"message": event.message, "return": None}

        app.webhooks.add_api_route(
            event.name, receive, methods=["POST"], summary=event.name,
            description=event.description + _SCOPES.format(", ".join(event.scopes) or "none"),
            operation_id=f"webhooks.{event.name}", tags=["event catalogue"],
            status_code=200, response_description="any 2xx answer acknowledges the delivery",
        )


_SCOPES = (
    "\n\nScopes (one of): {}. Signed as Standard Webhooks define (`webhook-id`, "
    "`webhook-timestamp`, `webhook-signature`); answer 2xx within the timeout."
)
