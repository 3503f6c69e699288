"""Grant Management for OAuth 2.0 (the OpenID draft) at the authorization endpoint.

A grant is a connection: its `grant_id` is the connection id. `grant_management_action`
`create` asks for a grant (a user has at most one live connection per app and debtor,
so where one exists it is updated as `merge` would, and the `grant_id` returned says
which); `merge` adds the requested scopes to the grant `grant_id`, `replace` makes them
its only scopes. Without an action the request behaves as before (a merge into the live
connection). Here only the parameters are checked; whose grant it is can be told once
the user is known (services/auth/consent/decide.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

ACTIONS = ("create", "merge", "replace")
# Discovery's `grant_management_actions_supported`: the actions above, and the grant
# management endpoint's query and revoke (on the registry).
SUPPORTED_ACTIONS = ("query", "revoke", "merge", "replace", "create")
INVALID_GRANT_ID = "invalid_grant_id"


@dataclass(frozen=True)
class GrantRequest:
    action: str | None = None
    grant_id: uuid.UUID | None = None

    @property
    def replace(self) -> bool:
        return self.action == "replace"


@dataclass(frozen=True)
class GrantRefused:
    error: str
    description: str


def grant_request(query: list[tuple[str, str]], *, first_party: bool, public: bool
                  ) -> GrantRequest | GrantRefused:
    """The grant management parameters of an authorization request, checked."""
    values = {name: [v for k, v in query if k == name]
              for name in ("grant_management_action", "grant_id")}
    if any(len(v) > 1 for v in values.values()):
        return GrantRefused("invalid_request", "grant_management_action and grant_id may "
                                               "appear once each")
    action = next(iter(values["grant_management_action"]), None)
    raw_id = next(iter(values["grant_id"]), None)
    if action is None and raw_id is None:
        return GrantRequest()
    if action is None:
        return GrantRefused("invalid_request", "grant_id needs grant_management_action "
                                               "merge or replace")
    if action not in ACTIONS:
        return GrantRefused("invalid_request", "grant_management_action must be create, "
                                               "merge or replace")
    if first_party:
        return GrantRefused("invalid_request", "a first-party app has no grants to manage")
    if public:
        # The draft (section 5.1) keeps grant management to confidential clients.
        return GrantRefused("invalid_request", "grant management is for confidential "
                                               "clients only")
    if action == "create":
        if raw_id is not None:
            return GrantRefused("invalid_request", "grant_id cannot be sent with create")
        return GrantRequest(action)
    if raw_id is None:
        return GrantRefused("invalid_request", f"{action} needs a grant_id")
    try:
        grant_id = uuid.UUID(raw_id) if len(raw_id) <= 64 else None
    except ValueError:
        grant_id = None
    if grant_id is None:
        return GrantRefused(INVALID_GRANT_ID, "unknown grant_id")
    return GrantRequest(action, grant_id)
