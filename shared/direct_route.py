"""Routes that answer without FastAPI's per-request dependency solving (the hot reads).

FastAPI resolves a route's dependencies anew on every request: it walks the dependency
tree, parses the declared parameters and caches each result, which costs the busiest
read more than its SQL. A hot route keeps its ordinary declaration (the path, its
parameters and dependencies, so routing, OpenAPI, the policy's `x-koppel-operation` and
the role matrix stay as they are) and names a direct handler with `served_directly`:
a plain `async (request, standard) -> Response` that calls what the dependencies would
have called, bound once per process. `standard` is FastAPI's own handler of the route,
for input the direct handler leaves to FastAPI (a malformed path parameter gets
FastAPI's 422).

A direct handler must run every dependency of its route. It names those it runs
(`runs`); `DirectRoute` refuses to build a route whose dependency tree (with the
dependencies of its router, of every router including it and of the app) calls anything
else, so a dependency added later cannot be skipped silently. While the app has
`dependency_overrides` (tests), FastAPI's own handler answers.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, _effective_route_context_var
from starlette.requests import Request
from starlette.responses import Response

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
DirectHandler = Callable[[Request, Handler], Awaitable[Response]]
_ATTRIBUTE = "koppel_direct"


def served_directly(handler: DirectHandler, *, runs: Iterable[Any]
                    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark an endpoint as answered by `handler`, which runs the dependencies `runs`."""
    ran = frozenset(runs)

    def mark(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        setattr(endpoint, _ATTRIBUTE, (handler, ran))
        return endpoint

    return mark


def dependency_of(annotated: Any) -> Any:
    """The dependency an `Annotated[T, Depends(...)]` alias names, for `runs`."""
    return annotated.__metadata__[0].dependency


def canonical_uuid(request: Request, name: str) -> uuid.UUID | None:
    """The path parameter `name` if it is a UUID in canonical form, else None (a direct
    handler leaves other forms to FastAPI, whose parsing and 422 they get)."""
    raw = request.path_params[name]
    try:
        value = uuid.UUID(raw)
    except ValueError:
        return None
    return value if str(value) == raw.lower() else None


def plain_int(request: Request, name: str, default: int, low: int, high: int) -> int | None:
    """The query parameter `name` (`default` when absent) if it is plain digits within
    low..high, else None (left to FastAPI: its parsing, its 422)."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6):
        return None
    value = int(raw)
    return value if low <= value <= high else None


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


class DirectRoute(APIRoute):
    """An APIRoute that answers through its endpoint's direct handler when it has one
    (`served_directly`), else exactly as FastAPI does."""

    def get_route_handler(self) -> Handler:
        standard = super().get_route_handler()
        marked = getattr(self.endpoint, _ATTRIBUTE, None)
        if marked is None:
            return standard
        direct, ran = marked
        # FastAPI builds the handler of a route once per router that includes it, with
        # that inclusion's dependencies (the including routers' and the app's) on an
        # effective copy of the route: check those, as FastAPI's own handler runs them.
        effective = _effective_route_context_var.get()
        route = effective if effective is not None and effective.original_route is self \
            else self
        skipped = [call for call in _calls(route.dependant) if call not in ran]
        if skipped:
            names = ", ".join(getattr(c, "__name__", type(c).__name__) for c in skipped)
            raise RuntimeError(f"the direct handler of {self.path} does not run: {names}")
        overrides = route.dependency_overrides_provider

        async def handler(request: Request) -> Response:
            if overrides is not None and getattr(overrides, "dependency_overrides", None):
                return await standard(request)  # overridden dependencies: FastAPI's way
            return await direct(request, standard)

        return handler
