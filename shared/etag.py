"""Optimistic concurrency (RFC 9110 sections 8.8.3, 13.1.1, 13.1.2): every answer carrying a
record that can be changed has an `ETag`; its writes take an optional `If-Match` and answer
412 when the record changed meanwhile.

The ETag is a digest of the record's JSON representation, so it changes exactly when the
representation does. A route declares `Versioned` (reads, creates) or `Guarded` (writes of
an existing record) as a dependency; `document_preconditions(app)` then documents the
`ETag` header and, for `Guarded`, the 412 answer on exactly those operations (the
dependency itself documents the `If-Match` header), so no route repeats the OpenAPI text.
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Header, Response
from fastapi.encoders import jsonable_encoder

from shared.errors import PROBLEM_JSON, KoppelError
from shared.openapi import Document, amend, api_routes, uses

# An entity tag in a list: optionally weak (`W/`), then a quoted opaque tag.
_ENTITY_TAG = re.compile(r'\s*(W/)?("[^"]*")\s*(?:,|$)')
ETAG_HEADER: dict[str, Any] = {
    "ETag": {"description": "The record's entity tag; send it back in `If-Match` to change "
                            "the record only if nobody changed it meanwhile.",
             "schema": {"type": "string"}},
}
PRECONDITION_FAILED: dict[str, Any] = {
    "description": "Precondition failed: the record changed since the `If-Match` ETag "
                   "(read it again and retry)",
    "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
}


class PreconditionFailed(KoppelError):
    status, slug, title = 412, "precondition-failed", "Precondition failed"


def etag_of(body: Any) -> str:
    """The strong ETag of a representation (a pydantic model or a dict)."""
    return etag_of_json(jsonable_encoder(body))


def etag_of_json(data: Any) -> str:
    """The strong ETag of a representation that is JSON-ready already (the hot reads)."""
    digest = hashlib.sha256(orjson.dumps(data, default=str,
                                         option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f'"{digest[:32]}"'


def _tags(header: str) -> list[tuple[bool, str]] | None:
    """The (weak, tag) pairs of an entity-tag list; None if the list does not parse."""
    found, position = [], 0
    while position < len(header):
        match = _ENTITY_TAG.match(header, position)
        if match is None:
            return None
        found.append((match.group(1) is not None, match.group(2)))
        position = match.end()
    return found


def if_none_match_hits(header: str | None, etag: str) -> bool:
    """`If-None-Match` (weak comparison): True if the client's copy is current."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    return any(tag == etag for _, tag in _tags(header) or [])


def if_match_holds(header: str | None, etag: str) -> bool:
    """`If-Match` (strong comparison): absent, `*` (the record exists, which it does once
    it was found) or a list naming the current strong tag. A weak or malformed tag never
    matches."""
    if header is None:
        return True
    if header.strip() == "*":
        return True
    return any(not weak and tag == etag for weak, tag in _tags(header) or [])


class Version:
    """Sets the `ETag` of the answer (`tag`); for a write, first checks `If-Match`
    against the record as it is now (`check`)."""

    def __init__(self, response: Response, if_match: str | None) -> None:
        self.response = response
        self.if_match = if_match

    @property
    def wanted(self) -> bool:
        """Whether the request sent `If-Match`: without it there is nothing to check, and
        a write need not read the record before its own (locked) read."""
        return self.if_match is not None

    def tag(self, body: Any) -> Any:
        """Put the ETag of `body` on the answer; returns `body` unchanged."""
        self.response.headers["ETag"] = etag_of(body)
        return body

    def check(self, current: Any, what: str = "record") -> None:
        """412 unless `If-Match` (if sent) names `current`'s ETag. Call it with the row
        read for update, before changing anything."""
        if not if_match_holds(self.if_match, etag_of(current)):
            raise PreconditionFailed(f"the {what} changed since that ETag")


async def versioned(response: Response) -> Version:
    return Version(response, None)


async def guarded(
    response: Response,
    if_match: Annotated[str | None, Header(
        alias="If-Match",
        description="Change the record only if its current ETag is one of these (or `*`: "
                    "if it exists); 412 otherwise. Optional.")] = None,
) -> Version:
    return Version(response, if_match)


Versioned = Annotated[Version, Depends(versioned)]
Guarded = Annotated[Version, Depends(guarded)]


def _kinds(app: FastAPI) -> dict[tuple[str, str], bool]:
    """(method, path) -> True for a guarded write, False for a versioned answer (a route
    that sets its ETag itself says so with `responses={200: {"headers": ETAG_HEADER}}`)."""
    found: dict[tuple[str, str], bool] = {}
    for method, path, route in api_routes(app):
        write = uses(route, guarded)
        if write or uses(route, versioned):
            found[(method, path)] = write
    return found


def document_preconditions(app: FastAPI) -> None:
    """Document, on each operation depending on `Versioned` or `Guarded`, the `ETag`
    header of its success answer, and on `Guarded` ones the 412 answer (`If-Match` is
    documented by the dependency's header parameter). Call it once the routers are in."""
    kinds = _kinds(app)

    def change(document: Document) -> None:
        for (method, path), write in kinds.items():
            responses = document["paths"][path][method]["responses"]
            for status, answer in responses.items():
                if status.startswith("2") and status != "204":
                    answer["headers"] = {**answer.get("headers", {}), **ETAG_HEADER}
            if write:
                responses["412"] = PRECONDITION_FAILED

    amend(app, change)
