"""A route served directly (shared/direct_route.py): its handler answers without FastAPI
solving the dependencies, FastAPI's own handler still takes what the direct one hands
back, and a route whose handler does not run every dependency cannot be built."""

# No `from __future__ import annotations`: FastAPI must resolve the local dependencies.

from typing import Annotated

import pytest
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.testclient import TestClient
from starlette.responses import PlainTextResponse, Response

from shared.direct_route import DirectRoute, Handler, served_directly


def _app(*, runs_everything: bool = True) -> tuple[FastAPI, list[str]]:
    calls: list[str] = []

    async def counted(request: Request) -> None:
        calls.append(f"counted {request.url.path}")

    async def checked() -> None:
        calls.append("checked")

    async def directly(request: Request, standard: Handler) -> Response:
        number = request.path_params["number"]
        if not number.isdigit():
            return await standard(request)
        await counted(request)
        await checked()
        return PlainTextResponse(f"direct {number}")

    router = APIRouter(dependencies=[Depends(counted)], route_class=DirectRoute)
    ran = (counted, checked) if runs_everything else (counted,)

    @router.get("/items/{number}")
    @served_directly(directly, runs=ran)
    async def item(number: int, _: Annotated[None, Depends(checked)]) -> str:
        return f"standard {number}"

    @router.get("/plain/{number}")
    async def plain(number: int) -> str:
        return f"plain {number}"

    app = FastAPI()
    app.include_router(router)
    return app, calls


def test_the_direct_handler_answers_and_runs_the_dependencies_itself() -> None:
    app, calls = _app()
    with TestClient(app) as client:
        answer = client.get("/items/7")
    assert answer.text == "direct 7"
    # Each dependency ran once, by the handler: FastAPI solved none of them.
    assert calls == ["counted /items/7", "checked"]


def test_input_left_to_fastapi_gets_its_validation() -> None:
    app, _ = _app()
    with TestClient(app) as client:
        answer = client.get("/items/seven")
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["path", "number"]


def test_a_route_without_a_direct_handler_is_served_by_fastapi() -> None:
    app, calls = _app()
    with TestClient(app) as client:
        assert client.get("/plain/3").json() == "plain 3"
    assert calls == ["counted /plain/3"]


def test_a_direct_handler_that_skips_a_dependency_cannot_be_built() -> None:
    with pytest.raises(RuntimeError, match="does not run: checked"):
        _app(runs_everything=False)


async def _guard() -> None:
    return None


def _included(how: str) -> FastAPI:
    router = APIRouter(route_class=DirectRoute)

    async def directly(request: Request, standard: Handler) -> Response:
        return PlainTextResponse("direct")

    @router.get("/items/{number}")
    @served_directly(directly, runs=())
    async def item(number: int) -> str:
        return "standard"

    app = FastAPI(dependencies=[Depends(_guard)] if how == "app" else None)
    if how == "include":
        app.include_router(router, dependencies=[Depends(_guard)])
    else:
        parent = APIRouter(dependencies=[Depends(_guard)] if how == "parent" else None)
        parent.include_router(router)
        app.include_router(parent)
    return app


@pytest.mark.parametrize("how", ["include", "parent", "app"])
def test_dependencies_added_by_an_including_router_or_the_app_count_too(how: str) -> None:
    """Including the route, or at the latest building the OpenAPI document (every Koppel
    app does, in create_service_app), builds each inclusion of the route: one that would
    skip the added dependency is refused."""
    with pytest.raises(RuntimeError, match="does not run: _guard"):
        _included(how).openapi()


def test_with_overridden_dependencies_fastapi_answers() -> None:
    app, calls = _app()
    app.dependency_overrides[_guard] = _guard  # any override at all
    with TestClient(app) as client:
        assert client.get("/items/7").json() == "standard 7"
    assert calls == ["counted /items/7", "checked"]
