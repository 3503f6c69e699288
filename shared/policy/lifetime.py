"""How long a consent lasts (docs/product.md section 3, "Expiry and renewal").

An environment may give connections a lifetime: `consent_lifetime_days` (None: no
expiry) and shorter ones by the sensitivity of the scopes a connection holds
(`consent_lifetime_days_by_sensitivity`, e.g. {"special_category": 90} for connections
holding `employee.absence.read`); the shortest that applies wins. A lifetime counts from
the consent or the last renewal. Auth (a new consent), the registry (a policy change, a
renewal) and the worker (notices and expiry) all ask these functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.models import Connection, ConnectionStatus, Environment
from shared.scopes import SCOPES, Sensitivity

MIN_DAYS = 30
MAX_DAYS = 730
# A policy change never makes a connection expire sooner than this from the change.
CHANGE_FLOOR = timedelta(days=14)
# The sensitivities a lifetime may be set for ("special" is short for special_category).
SENSITIVITIES = tuple(s.value for s in Sensitivity if s is not Sensitivity.NONE)
ALIASES = {"special": Sensitivity.SPECIAL_CATEGORY.value}


def check_days(days: int | None) -> int | None:
    """The lifetime if it is allowed (None, or 30 to 730 days); ValueError if not."""
    if days is not None and not MIN_DAYS <= days <= MAX_DAYS:
        raise ValueError(f"a consent lifetime is {MIN_DAYS} to {MAX_DAYS} days")
    return days


def check_by_sensitivity(values: Mapping[str, int] | None) -> dict[str, int] | None:
    """The lifetimes by sensitivity, with their names as the scope catalogue spells them;
    ValueError for an unknown sensitivity or a lifetime out of range."""
    if values is None:
        return None
    checked: dict[str, int] = {}
    for name, days in values.items():
        key = ALIASES.get(name, name)
        if key not in SENSITIVITIES:
            raise ValueError(f"unknown sensitivity {name!r}; one of {', '.join(SENSITIVITIES)}")
        check_days(days)
        checked[key] = min(days, checked.get(key, days))
    return dict(sorted(checked.items()))


def lifetime_days(environment: Environment | None, scopes: Iterable[str]) -> int | None:
    """The days a connection holding `scopes` lasts in the environment (None: forever)."""
    if environment is None:
        return None
    found: list[int] = []
    if environment.consent_lifetime_days is not None:
        found.append(environment.consent_lifetime_days)
    by_sensitivity = environment.consent_lifetime_days_by_sensitivity or {}
    if by_sensitivity:
        held = {SCOPES[s].sensitivity.value for s in scopes if s in SCOPES}
        found += [days for name, days in by_sensitivity.items() if name in held]
    return min(found) if found else None


def expires_at(environment: Environment | None, scopes: Iterable[str],
               start: datetime) -> datetime | None:
    """When a connection consented (or renewed) at `start` expires; None: never."""
    days = lifetime_days(environment, scopes)
    return None if days is None else start + timedelta(days=days)


def after_change(environment: Environment | None, scopes: Iterable[str], start: datetime,
                 current: datetime | None, now: datetime) -> datetime | None:
    """The expiry of a live connection once the policy changed at `now`: the new lifetime
    from its consent or last renewal (`start`), but never sooner than 14 days from the
    change, nor sooner than the expiry it already had if that was closer than 14 days."""
    new = expires_at(environment, scopes, start)
    if new is None:
        return None
    floor = now + CHANGE_FLOOR
    if new < floor:
        new = floor if current is None else max(new, min(current, floor))
    return new


def after_widening(environment: Environment | None, scopes: Iterable[str],
                   current: datetime | None, now: datetime) -> datetime | None:
    """The expiry of a connection consented to (or given more scopes) at `now`: the
    lifetime of all its scopes from now, but a widening never moves an expiry later."""
    new = expires_at(environment, scopes, now)
    if current is not None and (new is None or current < new):
        return current
    return new


@dataclass(frozen=True)
class Renewal:
    """What a renewal changed: the status before it and the event's changed fields."""

    previous_status: str
    changed_fields: list[str]

    def audit_fields(self, connection: Connection, via: str) -> dict[str, Any]:
        """The `connection.renewed` audit event's fields (`via`: consent_page,
        challenge_api, api or consent_request)."""
        expiry = connection.expires_at
        return {"app_id": str(connection.app_id), "user_id": str(connection.user_id),
                "expires_at": expiry.isoformat() if expiry else None,
                "previous_status": self.previous_status, "via": via}


def renew(connection: Connection, environment: Environment | None, now: datetime) -> Renewal:
    """Renew the connection's row at `now` (the consent page and the registry's route
    both do it here): a new expiry from now (None when the environment dropped its
    lifetime since: then it no longer expires); `expired` becomes `active`, a suspended
    one stays suspended (its own rules decide when it resumes)."""
    was = str(connection.status)
    connection.renewed_at = connection.updated_at = now
    connection.expires_at = expires_at(environment, connection.scopes, now)
    if was == ConnectionStatus.EXPIRED:
        connection.status = ConnectionStatus.ACTIVE
        return Renewal(was, ["expires_at", "status"])
    return Renewal(was, ["expires_at"])
