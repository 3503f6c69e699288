import threading
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.exc import StatementError
from sqlmodel import Session

from shared.db.types import utcnow, uuid7
from shared.models import Environment
from tests.fixtures.factories import make_environment

AMSTERDAM_SUMMER = timezone(timedelta(hours=2))


def test_timestamps_come_back_aware_utc_and_the_same_instant(db_session: Session) -> None:
    written = datetime(2026, 6, 1, 14, 30, 15, 123456, tzinfo=AMSTERDAM_SUMMER)
    environment = make_environment(db_session, created_at=written)
    db_session.expire_all()
    read = db_session.get(Environment, environment.id).created_at
    assert read.tzinfo is not None and read.utcoffset() == timedelta(0)
    assert read == written
    assert (read.hour, read.minute) == (12, 30)


def test_a_naive_timestamp_is_refused(db_session: Session) -> None:
    with pytest.raises(StatementError, match="naive datetime"):
        make_environment(db_session, created_at=datetime(2026, 6, 1, 12, 0))


def test_utcnow_is_aware_utc() -> None:
    assert utcnow().tzinfo is UTC
    assert abs(utcnow() - datetime.now(UTC)) < timedelta(seconds=5)


def test_uuid7_is_version_7_with_the_rfc_variant() -> None:
    value = uuid7()
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert len({uuid7() for _ in range(1000)}) == 1000


def test_uuid7_carries_the_time_and_sorts_by_it() -> None:
    before = time.time_ns() // 1_000_000
    values = []
    for _ in range(5):
        values.append(uuid7())
        time.sleep(0.002)
    assert sorted(values) == values
    assert sorted(v.bytes for v in values) == [v.bytes for v in values]
    assert before <= values[0].int >> 80 <= before + 1000


def test_uuid7_made_one_after_another_sort_in_creation_order() -> None:
    values = [uuid7() for _ in range(10_000)]  # many share a millisecond
    assert len({v.int >> 80 for v in values}) < len(values)
    assert values == sorted(values)
    assert len(set(values)) == len(values)
    assert {(v.version, v.variant) for v in values} == {(7, uuid.RFC_4122)}


def test_uuid7_from_many_threads_stay_unique_and_ordered_per_thread() -> None:
    made: dict[int, list[uuid.UUID]] = {}

    def make(n: int) -> None:
        made[n] = [uuid7() for _ in range(2000)]

    threads = [threading.Thread(target=make, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(values == sorted(values) for values in made.values())
    assert len({v for values in made.values() for v in values}) == 8000


def test_uuid7_ids_made_in_one_millisecond_still_sort_in_creation_order() -> None:
    ids = [uuid7() for _ in range(5000)]  # far more than one millisecond's worth
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
