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


def _sql(clause, dialect) -> str:
    return str(clause.compile(dialect=dialect))


def test_both_readers_join_by_every_condition_of_the_rule() -> None:
    exposure = exposure_statement(uuid.uuid4(), uuid.uuid4(), ExposureStatus.ACTIVE,
                                  utcnow(), None, 10)
    for dialect in (postgresql.dialect(), sqlite.dialect()):
        for condition in coverage.covers():
            assert _sql(condition, dialect) in _sql(CONNECTION_EMPLOYEE, dialect)
            assert _sql(condition, dialect) in _sql(exposure, dialect)


def test_live_is_active_and_unexpired() -> None:
    text = _sql(coverage.live(utcnow()), postgresql.dialect())
    assert "connections.status = " in text
    assert "connections.expires_at IS NULL OR connections.expires_at > " in text
