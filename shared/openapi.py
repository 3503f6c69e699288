"""The services' OpenAPI documents: FastAPI generates each from the routes, and the parts
it cannot know are added to the generated document by amendments.

`amend(app, change)` runs `change(document)` once, on the document's first generation, in
the order the amendments were made; every later call answers the same document. What an
amendment adds is derived from the routes (their dependencies, their `openapi_extra`) or
from the declared policy, so that a new route gets it by being declared like the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

Document = dict[str, Any]
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
ANSWERS_ATTRIBUTE = "koppel_answers"


def amend(app: FastAPI, change: Callable[[Document], None]) -> None:
    """Have `change` complete `app`'s OpenAPI document when it is first generated."""
    generate = app.openapi

    def openapi() -> Document:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        change(document)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def operations(document: Document) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) of every operation in the document's `paths`."""
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield method, path, operation


def api_routes(app: FastAPI) -> Iterator[tuple[str, str, APIRoute]]:
    """(method, path, route) of every API route of the app, method in lower case and path
    as the document writes it (mounted routers included)."""
    for context in iter_route_contexts(app.routes):
        route = context.route if isinstance(context.route, APIRoute) else context.original_route
        if not isinstance(route, APIRoute) or context.path_format is None:
            continue
        for method in context.methods or ():
            yield method.lower(), context.path_format, route


def answers(*statuses: int) -> Callable[[Any], Any]:
    """Mark a dependency with the error statuses it can answer (e.g. a rate limit's 429),
    so that every operation depending on it documents them (shared/problem_answers.py)."""

    def mark(dependency: Any) -> Any:
        setattr(dependency, ANSWERS_ATTRIBUTE, frozenset(statuses))
        return dependency

    return mark


def declared_answers(route: APIRoute) -> frozenset[int]:
    """The statuses the route's dependencies (at any depth) are marked with."""
    found: set[int] = set()
    stack = [route.dependant]
    while stack:
        dependant = stack.pop()
        found |= getattr(dependant.call, ANSWERS_ATTRIBUTE, frozenset())
        stack.extend(dependant.dependencies)
    return frozenset(found)


def uses(route: APIRoute, call: Any) -> bool:
    """Whether the route depends on `call`, at any depth."""
    stack = [route.dependant]
    while stack:
        dependant = stack.pop()
        if dependant.call is call:
            return True
        stack.extend(dependant.dependencies)
    return False


def declare_servers(app: FastAPI, url: str) -> None:
    """The service's public URL as the document's one server."""
    amend(app, lambda document: document.update(servers=[{"url": url}]))
