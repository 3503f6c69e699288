"""Starlette requests as Authlib sees them.

Authlib's server side is synchronous, so the endpoint reads the query and form first
(on the event loop) and hands Authlib this plain, already-parsed request.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from authlib.oauth2.rfc6749 import OAuth2Payload, OAuth2Request


class ParsedPayload(OAuth2Payload):
    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items
        self._data = dict(items)

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list]:
        values: defaultdict[str, list] = defaultdict(list)
        for key, value in self._items:
            values[key].append(value)
        return values


class ParsedRequest(OAuth2Request):
    """An OAuth2Request over parsed query and form parameters (form wins on overlap)."""

    headers: Mapping[str, str]
    payload: ParsedPayload

    def __init__(
        self, method: str, uri: str, headers: Mapping[str, str],
        query: Iterable[tuple[str, str]] = (), form: Iterable[tuple[str, str]] = (),
    ) -> None:
        super().__init__(method=method, uri=uri, headers=headers)
        self._query = list(query)
        self._form = list(form)
        self.payload = ParsedPayload(self._query + self._form)
        # Koppel's own context for the grant (the connection a consent made, ...).
        self.koppel: dict = {}

    @property
    def args(self) -> dict[str, str | None]:
        return dict(self._query)

    @property
    def form(self) -> dict[str, str]:
        return dict(self._form)

    @property
    def form_items(self) -> list[tuple[str, str]]:
        """The form's parameters in order, repeated ones included."""
        return list(self._form)
