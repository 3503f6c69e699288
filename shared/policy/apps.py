"""How far a first-party app reaches: one environment (bound) or all (platform-wide).

A first-party app bound to an environment is a tenant's own frontend or integration:
its client credentials, its logins and its tokens act inside that environment only.
A platform-wide app is the SaaS's own backend (made by `koppel app create-platform`).
A first-party app that is neither reaches nothing (the migration that introduced the
binding suspended such apps). Third-party apps reach data through their connections,
never through these rules.

The functions take anything with the `App` columns they read (an `App`, a Core row of
the `apps` table, or a checked authorization request), so the auth service's narrow
rows can be asked as well as the ORM objects.
"""

from __future__ import annotations

import uuid
from typing import Protocol


class Placed(Protocol):
    """The columns of an app that say where it reaches."""

    first_party: bool
    platform: bool
    environment_id: uuid.UUID | None


def is_platform(app: Placed) -> bool:
    """A platform-wide first-party app (the SaaS's own backend)."""
    return bool(app.first_party and app.platform)


def reaches_environment(app: Placed, environment_id: uuid.UUID | None) -> bool:
    """Whether a first-party app may act on the environment's objects."""
    if not app.first_party or environment_id is None:
        return False
    return is_platform(app) or app.environment_id == environment_id


def admits_user(app: Placed, user_environment_id: uuid.UUID) -> bool:
    """Whether a user of this environment may sign in to the app (and get its tokens).

    Any user may sign in to a third-party app (its consent rules decide the rest); a
    first-party app admits only the users it reaches."""
    return not app.first_party or reaches_environment(app, user_environment_id)


def may_introspect(app: Placed, client_id: str, token_client_id: str) -> bool:
    """RFC 7662 section 4: a client learns only about its own tokens, unless it is the
    platform's own backend."""
    return client_id == token_client_id or is_platform(app)


def may_handle_challenge(caller: Placed, caller_client_id: str, app: Placed,
                         app_client_id: str) -> bool:
    """Whether a first-party backend may read or answer a login or consent challenge
    of an authorization request made by `app`.

    A platform-wide backend handles every request. A bound one handles its own
    requests and those of third-party apps (their users are then checked against its
    environment), never another first-party app's."""
    if is_platform(caller):
        return True
    return caller.first_party and caller.environment_id is not None and (
        app_client_id == caller_client_id or not app.first_party)
