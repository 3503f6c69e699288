"""The coverage rule (shared/policy/coverage.py) is the one both readers join by: every
condition of `covers` is in the data API's employee read and in the exposure query, so
neither can drop or add one on its own (test_exposure.py checks that they agree)."""

from __future__ import annotations

import uuid

from sqlalchemy.dialects import postgresql, sqlite

from services.registry.exposure.repository import exposure_statement
from services.registry.exposure.schemas import ExposureStatus
from services.sync.resources.employee_read import CONNECTION_EMPLOYEE
from shared.db.types import utcnow
from shared.policy import coverage


def _sql(clause, dialect, literal: bool = False) -> str:
    return str(clause.compile(dialect=dialect, compile_kwargs={"literal_binds": literal}))


def test_both_readers_join_by_every_condition_of_the_rule() -> None:
    """The data API joins the employees table; the exposure query stands one known
    employee (`Subject`) in its place, with the same conditions."""
    environment_id, employee_id = uuid.uuid4(), uuid.uuid4()
    exposure = exposure_statement(environment_id, employee_id, ExposureStatus.ACTIVE,
                                  utcnow(), None, 10)
    subject = coverage.Subject(employee_id, environment_id)
    for dialect in (postgresql.dialect(), sqlite.dialect()):
        for condition in coverage.covers():
            assert _sql(condition, dialect) in _sql(CONNECTION_EMPLOYEE, dialect)
        for condition in coverage.covers(employees=subject):
            assert _sql(condition, dialect, True) in _sql(exposure, dialect, True)


def test_live_is_active_and_unexpired() -> None:
    text = _sql(coverage.live(utcnow()), postgresql.dialect())
    assert "connections.status = " in text
    assert "connections.expires_at IS NULL OR connections.expires_at > " in text
