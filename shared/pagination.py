"""Cursor pagination (docs/product.md section 7): opaque, tamper-evident cursors for keyset queries.

A cursor carries the sort key and the position (the last row's sort value and id),
signed with the digest key, so a forged, edited or foreign cursor is refused with 400
instead of silently moving the window. Most lists go in id order: `after_id` and
`id_cursor` are their cursors; `LimitQuery` is the data API's `limit` parameter.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import uuid
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Query, Request, Response

from shared.errors import KoppelError

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_CURSOR_LENGTH = 512
# The sync service's lists (data API, webhooks): outside 1..200 is a 422.
MAX_DATA_LIMIT = 200
LimitQuery = Annotated[int, Query(ge=1, le=MAX_DATA_LIMIT)]


class InvalidParameter(KoppelError):
    status, slug, title = 400, "invalid-parameter", "Invalid parameter"


def check_limit(limit: int, maximum: int = MAX_LIMIT) -> int:
    """The page size; outside 1..maximum is a 400."""
    if not 1 <= limit <= maximum:
        raise InvalidParameter(f"limit must be between 1 and {maximum}", parameter="limit")
    return limit


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, body: str) -> str:
    return _b64(hmac.new(key, f"cursor:{body}".encode(), hashlib.sha256).digest()[:16])


def encode_cursor(key: bytes, kind: str, position: list[Any]) -> str:
    """An opaque cursor for `position` in the ordering named `kind`."""
    body = _b64(json.dumps({"k": kind, "p": position}, separators=(",", ":")).encode())
    return f"{body}.{_mac(key, body)}"


def decode_cursor(key: bytes, kind: str, cursor: str) -> list[Any]:
    """The position of a cursor made by `encode_cursor` for `kind`; 400 otherwise."""
    invalid = InvalidParameter("the cursor is not valid for this list", parameter="cursor")
    body, _, mac = cursor.partition(".")
    if len(cursor) > MAX_CURSOR_LENGTH or not hmac.compare_digest(
        mac.encode(), _mac(key, body).encode()
    ):
        raise invalid
    try:
        data = json.loads(_unb64(body))
    except (binascii.Error, ValueError):
        raise invalid from None
    if not isinstance(data, dict) or data.get("k") != kind or not isinstance(data.get("p"), list):
        raise invalid
    return data["p"]


def after_id(key: bytes, kind: str, cursor: str | None) -> uuid.UUID | None:
    """The id after which a list in id order resumes (None without a cursor); 400 for a
    cursor not made by `id_cursor` for `kind`."""
    if cursor is None:
        return None
    try:
        return uuid.UUID(str(decode_cursor(key, kind, cursor)[0]))
    except (IndexError, ValueError):
        raise InvalidParameter("the cursor is not valid for this list",
                               parameter="cursor") from None


# Ids are UUIDv7, all above the nil UUID: a keyset statement's first page starts after it.
FIRST_PAGE = uuid.UUID(int=0)


def start_after(key: bytes, kind: str, cursor: str | None
                ) -> tuple[uuid.UUID, InvalidParameter | None]:
    """`after_id` for a statement that checks its caller itself (the sync fast paths):
    the id to start after (`FIRST_PAGE` without a cursor) and, for a cursor not made
    for `kind`, its 400, to raise once the caller's own refusals (401, 403) had their
    turn, in the general path's order."""
    try:
        return after_id(key, kind, cursor) or FIRST_PAGE, None
    except InvalidParameter as refused:
        return FIRST_PAGE, refused


def id_cursor(key: bytes, kind: str, last_id: uuid.UUID) -> str:
    """The cursor of the page after the row `last_id`, in a list in id order."""
    return encode_cursor(key, kind, [str(last_id)])


def page(request: Request, response: Response, data: list[Any],
         next_cursor: str | None) -> dict[str, Any]:
    """The list document, with a `Link: rel="next"` header when there is more."""
    if next_cursor is not None:
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
        url = request.url.replace(query=urlencode([*query, ("cursor", next_cursor)]))
        response.headers["Link"] = f'<{url}>; rel="next"'
    return {"data": data, "next_cursor": next_cursor}
