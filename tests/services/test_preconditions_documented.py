"""Every write of a record in the registry's and sync's OpenAPI documents says how to
write it safely: an `If-Match` header parameter and a 412 problem answer, with the
record's `ETag` on its answer (shared/etag.py). A new PATCH, PUT or DELETE, or a POST that
changes an existing record (a path with an id, answering 200: `.../end`, `.../disable`),
fails here until it declares `Guarded`, or is listed below with the reason it is none."""

from __future__ import annotations

from typing import Any

import pytest

from services.registry.app import create_app as create_registry
from services.sync.app import create_app as create_sync
from shared.config import Settings
from shared.errors import PROBLEM_JSON

DOCUMENTS = {name: factory(Settings(_env_file=None)).openapi()
             for name, factory in (("registry", create_registry), ("sync", create_sync))}
# Writes that change no versioned record, each with its reason.
NOT_RECORD_WRITES = {
    # Connection lifecycle: revoking is final and idempotent, whatever the connection's state.
    ("registry", "delete", "/v1/me/connections/{connection_id}"),
    ("registry", "post", "/v1/app/connections/{connection_id}/revoke"),
    ("registry", "post", "/v1/environment/connections/{connection_id}/revoke"),
    ("registry", "delete", "/v1/grants/{grant_id}"),
    # Renewing restarts the consent lifetime from now under the row's lock: the same
    # outcome whatever version the caller saw (a user's act, like a revoke).
    ("registry", "post", "/v1/me/connections/{connection_id}/renew"),
    # Narrowing only takes scopes away, to the set the caller names (a user's or an
    # accountant's act, like a revoke): the outcome does not depend on a version seen.
    ("registry", "post", "/v1/me/connections/{connection_id}/narrow"),
    ("registry", "post", "/v1/environment/connections/{connection_id}/narrow"),
    # An access review's decision is made once (a second is 409, under the item's lock):
    # it never overwrites a version the caller read.
    ("registry", "post", "/v1/environment/access-reviews/{review_id}/items/{item_id}/decision"),
    ("registry", "post", "/v1/me/access-reviews/items/{item_id}/decision"),
    # A consent request is decided once (a second decision is 409, under the request's
    # lock): it never overwrites a version the caller read.
    ("registry", "post", "/v1/environment/consent-requests/{request_id}/approve"),
    ("registry", "post", "/v1/environment/consent-requests/{request_id}/deny"),
    # Policy decisions: a setting replaced whole (PUT of the decision itself).
    ("registry", "put", "/v1/environment/policy/approvals"),
    ("registry", "put", "/v1/environment/policy/apps/{client_id}"),
    ("registry", "put", "/v1/environment/policy/consent-templates"),
    ("registry", "put", "/v1/environment/policy/consent-lifetime"),
    # A sandbox simulation makes a new change in it; it overwrites nothing the caller read.
    ("registry", "post", "/v1/sandboxes/{sandbox_id}/simulate"),
    # RFC 7592 client configuration: its registration access token guards it.
    ("registry", "put", "/oauth2/register/{client_id}"),
    ("registry", "delete", "/oauth2/register/{client_id}"),
}


def _writes() -> list[tuple[str, str, str, dict[str, Any]]]:
    found = []
    for service, document in DOCUMENTS.items():
        for path, items in document["paths"].items():
            for method, operation in items.items():
                changes = method in ("patch", "put", "delete") or (
                    method == "post" and "{" in path and "200" in operation["responses"])
                if changes:
                    found.append((service, method, path, operation))
    return found


WRITES = _writes()


def test_the_walk_finds_the_record_writes() -> None:
    walked = {(s, m, p) for s, m, p, _ in WRITES}
    assert walked >= NOT_RECORD_WRITES  # the exemptions name routes that exist
    for write in (("sync", "patch", "/v1/employees/{employee_id}/bank-accounts/{account_id}"),
                  ("sync", "post", "/v1/employees/{employee_id}/employments/{employment_id}/end"),
                  ("sync", "post", "/v1/webhooks/{endpoint_id}/rotate-secret"),
                  ("sync", "post", "/v1/webhooks/{endpoint_id}/rotate-key"),
                  ("sync", "delete", "/v1/webhooks/{endpoint_id}"),
                  ("registry", "patch", "/v1/directory/users/{user_id}")):
        assert write in walked


@pytest.mark.parametrize("service,method,path,operation",
                         [w for w in WRITES if w[:3] not in NOT_RECORD_WRITES],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_every_record_write_documents_if_match_412_and_etag(
    service: str, method: str, path: str, operation: dict[str, Any]
) -> None:
    [if_match] = [p for p in operation.get("parameters", [])
                  if p["in"] == "header" and p["name"].lower() == "if-match"]
    assert if_match.get("required", False) is False  # optional
    failed = operation["responses"]["412"]
    assert failed["content"][PROBLEM_JSON]["schema"] == {"$ref": "#/components/schemas/Problem"}
    for status, answer in operation["responses"].items():
        if status.startswith("2") and status != "204":
            assert "ETag" in answer.get("headers", {}), status


def test_every_read_of_a_versioned_record_documents_its_etag() -> None:
    """The GET beside each versioned write (same path) documents the `ETag` header."""
    for service, method, path, _ in WRITES:
        if (service, method, path) in NOT_RECORD_WRITES:
            continue
        record = path.removesuffix("/end").removesuffix("/disable").removesuffix(
            "/enable").removesuffix("/rotate-secret").removesuffix("/rotate-key")
        read = DOCUMENTS[service]["paths"][record].get("get")
        assert read is not None, f"{record} has no GET"
        assert "ETag" in read["responses"]["200"].get("headers", {}), record
