"""A connection's health flags (docs/product.md 5.4 and 5.5, issue 19 item 5): what a
person can act on, as machine-readable strings, in one place for Manage apps, the
overview and its CSV export. (On PostgreSQL the export writes the same cell in SQL:
overview/repository.py `flags_text`, held to the same bytes by
tests/services/registry/test_csv_export_sql.py.)

- `expiring_soon`: the connection expires within the notice window
  (KOPPEL_CONSENT_EXPIRY_NOTICE_DAYS), and has not expired yet;
- `unused_90_days`: last used more than 90 days ago, or never used and made more than
  90 days ago (the overview's `stale`);
- `unused_scopes`: some of its scopes were granted more than 30 days ago and not needed
  for 90 days (the connection's `unused_scopes` names them; connections/usage.py). Not in
  the CSV's `flags` cell, which both export paths write the same way from the
  connection row alone;
- `user_deactivated`: the consenting user's login is inactive;
- `app_suspended`: the operator suspended the app;
- `app_blocked`: the environment's app policy blocks the app (its entry, or the
  environment's default app state);
- `webhooks_disabled`: at least one of the app's webhook endpoints is disabled (any, not
  all: a disabled endpoint misses the events it subscribed to).

A revoked connection has no flags: there is nothing left to act on. The order is
always ORDER's. Flags are computed when read, never stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import String, bindparam, literal, select, union_all
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.models import (
    AppState,
    AppStatus,
    ConnectionStatus,
    Environment,
    EnvironmentAppPolicy,
    WebhookEndpoint,
    WebhookEndpointStatus,
)
from shared.policy.approvals import state_of

EXPIRING_SOON = "expiring_soon"
UNUSED = "unused_90_days"
UNUSED_SCOPES = "unused_scopes"
USER_DEACTIVATED = "user_deactivated"
APP_SUSPENDED = "app_suspended"
APP_BLOCKED = "app_blocked"
WEBHOOKS_DISABLED = "webhooks_disabled"
ORDER = (EXPIRING_SOON, UNUSED, UNUSED_SCOPES, USER_DEACTIVATED, APP_SUSPENDED, APP_BLOCKED,
         WEBHOOKS_DISABLED)
UNUSED_AFTER = timedelta(days=90)


def _aware(value: datetime | str) -> datetime:
    """A timestamp as UTC-aware (SQLite gives naive UTC, a PostgreSQL export ISO text)."""
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def expiring_before(now: datetime, notice_days: int) -> datetime:
    """A connection expiring before this time is `expiring_soon`."""
    return now + timedelta(days=notice_days)


def flags(status: str, *, expires_at: datetime | str | None, unused: bool, user_active: bool,
          app_flags: Iterable[str], expiring_limit: datetime,
          unused_scopes: bool = False) -> list[str]:
    """The connection's flags, in ORDER. `unused` is the overview's staleness rule
    (`is_unused`), `unused_scopes` whether usage.unused_scopes names any, `app_flags`
    what `app_flags` found for its app."""
    if status == ConnectionStatus.REVOKED:
        return []
    found = []
    if (expires_at is not None and status != ConnectionStatus.EXPIRED
            and _aware(expires_at) < expiring_limit):
        found.append(EXPIRING_SOON)
    if unused:
        found.append(UNUSED)
    if unused_scopes:
        found.append(UNUSED_SCOPES)
    if not user_active:
        found.append(USER_DEACTIVATED)
    return [*found, *app_flags]


def is_unused(status: str, created_at: datetime, last_used_at: datetime | None,
              now: datetime) -> bool:
    """Unused for 90 days (or never used and made more than 90 days ago), not revoked."""
    last = _aware(last_used_at or created_at)
    return status != ConnectionStatus.REVOKED and last < now - UNUSED_AFTER


# Built once (the overview asks on every page): each app's entry in the environment's
# policy (its state), the apps with a disabled webhook endpoint, and the environment's
# default state for an app without an entry. Core statements: sqlmodel's select types no
# literal column.
_ENVIRONMENT: Any = bindparam("environment_id")
_APPS: Any = bindparam("app_ids", expanding=True)
_APP_FLAGS: Any = union_all(
    select(literal("state", String), col(EnvironmentAppPolicy.app_id),
           col(EnvironmentAppPolicy.state)).where(
        col(EnvironmentAppPolicy.environment_id) == _ENVIRONMENT,
        col(EnvironmentAppPolicy.app_id).in_(_APPS)),
    select(literal(WEBHOOKS_DISABLED, String), col(WebhookEndpoint.app_id),
           literal(None, String)).where(
        col(WebhookEndpoint.app_id).in_(_APPS),
        col(WebhookEndpoint.status) == WebhookEndpointStatus.DISABLED).distinct(),
    select(literal("default", String), col(Environment.id),
           col(Environment.default_app_state)).where(col(Environment.id) == _ENVIRONMENT),
)


async def app_flags(session: AsyncSession, environment_id: uuid.UUID,
                    statuses: Mapping[uuid.UUID, str]) -> dict[uuid.UUID, list[str]]:
    """The app-wide flags of each app (`statuses`: app id -> the app's status, from the
    App rows the caller holds), as the environment sees them: one query for any number
    of apps (never one per connection), for the blocked and the disabled webhooks."""
    ids = sorted(statuses)
    if not ids:
        return {}
    db = await session.connection()
    rows = cast(list[tuple[str, uuid.UUID, str | None]], (await db.execute(
        _APP_FLAGS, {"environment_id": environment_id, "app_ids": ids})).all())
    states = {app_id: state for kind, app_id, state in rows if kind == "state"}
    off = {app_id for kind, app_id, _ in rows if kind == WEBHOOKS_DISABLED}
    fallback = next((state for kind, _, state in rows if kind == "default"), None)
    result: dict[uuid.UUID, list[str]] = {}
    for app_id in ids:
        blocked = state_of(states.get(app_id), fallback) == AppState.BLOCKED
        result[app_id] = [flag for flag, on in (
            (APP_SUSPENDED, statuses[app_id] == AppStatus.SUSPENDED),
            (APP_BLOCKED, blocked), (WEBHOOKS_DISABLED, app_id in off)) if on]
    return result
