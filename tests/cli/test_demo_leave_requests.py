"""The demo seed files a few leave requests beside the balances, once."""

from __future__ import annotations

import uuid

from sqlmodel import Session, select

from cli.demo import seed_demo
from services.sync.resources.schemas import LeaveRequestCreate
from shared.models import LeaveRequest
from shared.vault import KeyRing


def _requests(session: Session, environment_id: uuid.UUID) -> list[LeaveRequest]:
    return list(session.exec(select(LeaveRequest).where(
        LeaveRequest.environment_id == environment_id)).all())


def test_the_demo_employees_get_leave_requests_once(db_session: Session,
                                                     keyring: KeyRing) -> None:
    document = seed_demo(db_session, keyring, "Leave", employees=2)
    environment_id = uuid.UUID(document["environment"]["id"])
    rows = _requests(db_session, environment_id)
    # 4 companies x 2 employees: an approved week each, a pending day for the first.
    assert sorted(r.status for r in rows) == ["approved"] * 8 + ["requested"] * 4
    for row in rows:  # every seeded request is one the API itself would accept
        LeaveRequestCreate.model_validate({
            "leave_type": row.leave_type, "start_date": row.start_date,
            "end_date": row.end_date, "hours": row.hours, "note": row.note})
    seed_demo(db_session, keyring, "Leave", employees=2)
    assert len(_requests(db_session, environment_id)) == 12
