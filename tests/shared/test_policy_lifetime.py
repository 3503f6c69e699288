"""The consent lifetime rules (shared/policy/lifetime.py): the shortest applicable
lifetime wins, a lifetime change never shortens an expiry to less than 14 days from the
change (nor past an expiry already closer), and giving more scopes never moves an
expiry later."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.models import Environment
from shared.policy.lifetime import (
    after_change,
    after_widening,
    check_by_sensitivity,
    check_days,
    expires_at,
    lifetime_days,
)

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def _environment(days: int | None, by: dict[str, int] | None = None) -> Environment:
    return Environment(name="lifetime", consent_lifetime_days=days,
                       consent_lifetime_days_by_sensitivity=by)


def test_the_shortest_applicable_lifetime_wins() -> None:
    environment = _environment(365, {"special_category": 90, "sensitive": 180})
    assert lifetime_days(environment, ["company.info.read"]) == 365
    assert lifetime_days(environment, ["employee.payment.read"]) == 180
    assert lifetime_days(environment, ["employee.payment.read", "employee.absence.read"]) == 90
    only_special = _environment(None, {"special_category": 90})
    assert lifetime_days(only_special, ["company.info.read"]) is None
    assert lifetime_days(only_special, ["employee.absence.read"]) == 90
    assert lifetime_days(_environment(None), ["employee.absence.read"]) is None
    assert expires_at(environment, ["employee.absence.read"], NOW) == NOW + 90 * DAY


def test_lifetimes_out_of_range_or_for_unknown_sensitivities_are_refused() -> None:
    assert check_days(None) is None and check_days(30) == 30 and check_days(730) == 730
    for days in (0, 29, 731):
        with pytest.raises(ValueError):
            check_days(days)
    assert check_by_sensitivity({"special": 90}) == {"special_category": 90}
    for bad in ({"secret": 90}, {"none": 90}, {"personal": 10}):
        with pytest.raises(ValueError):
            check_by_sensitivity(bad)


def test_a_change_never_expires_a_connection_sooner_than_14_days_from_it() -> None:
    environment = _environment(30)
    recent, old = NOW - 2 * DAY, NOW - 300 * DAY
    # From the consent, when that is later than the floor.
    assert after_change(environment, [], recent, None, NOW) == recent + 30 * DAY
    # An old consent: 14 days from the change.
    assert after_change(environment, [], old, None, NOW) == NOW + 14 * DAY
    assert after_change(environment, [], old, NOW + 200 * DAY, NOW) == NOW + 14 * DAY
    # An expiry already closer than 14 days is not moved later by a shorter lifetime.
    assert after_change(environment, [], old, NOW + 3 * DAY, NOW) == NOW + 3 * DAY
    # A longer lifetime moves it later; no lifetime: no expiry.
    assert after_change(_environment(730), [], old, NOW + 3 * DAY, NOW) == old + 730 * DAY
    assert after_change(_environment(None), [], old, NOW + 3 * DAY, NOW) is None


def test_more_scopes_never_move_an_expiry_later() -> None:
    environment = _environment(365, {"special_category": 90})
    current = NOW + 200 * DAY
    assert after_widening(environment, ["company.info.read"], current, NOW) == current
    assert after_widening(environment, ["employee.absence.read"], current, NOW) == \
        NOW + 90 * DAY
    assert after_widening(environment, ["company.info.read"], None, NOW) == NOW + 365 * DAY
