"""The demo seed also fills the data slices (SPEC 4) of its employees, idempotently."""

from __future__ import annotations

import uuid

from sqlalchemy import func
from sqlmodel import Session, select

from cli.demo import seed_demo
from services.sync.resources.schemas import BankAccountUpdate
from shared.models import (
    Absence,
    BankAccount,
    Employee,
    Employment,
    LeaveBalance,
    PayrollRun,
    WageComponent,
)
from shared.vault import KeyRing

SLICES = [Employment, WageComponent, BankAccount, LeaveBalance, Absence, PayrollRun]


def _counts(session: Session, environment_id: uuid.UUID) -> dict[str, int]:
    return {
        model.__tablename__: session.exec(select(func.count()).select_from(model).where(
            model.environment_id == environment_id)).one()
        for model in SLICES
    }


def test_the_demo_employees_get_every_slice_once(db_session: Session, keyring: KeyRing) -> None:
    document = seed_demo(db_session, keyring, "Slices", employees=2)
    environment_id = uuid.UUID(document["environment"]["id"])
    counts = _counts(db_session, environment_id)
    # 4 companies x 2 employees; the second employee of each company had an absence.
    assert counts == {"employments": 8, "wage_components": 16, "bank_accounts": 8,
                      "leave_balances": 16, "absences": 4, "payroll_runs": 12}
    for account in db_session.exec(select(BankAccount)).all():
        BankAccountUpdate(iban=account.iban)  # the API's own IBAN shape
        check = account.iban[4:] + account.iban[:4]
        assert int("".join(str(int(ch, 36)) for ch in check)) % 97 == 1
    run = db_session.exec(select(PayrollRun)).first()
    assert run.status == "finalized" and run.gross_total_cents > run.net_total_cents > 0

    seed_demo(db_session, keyring, "Slices", employees=2)
    assert _counts(db_session, environment_id) == counts
    # A later run with more employees fills only the newcomers' slices.
    seed_demo(db_session, keyring, "Slices", employees=3)
    grown = _counts(db_session, environment_id)
    assert grown["employments"] == 12 and grown["payroll_runs"] == 12
    employees = db_session.exec(select(func.count()).select_from(Employee).where(
        Employee.environment_id == environment_id)).one()
    assert grown["bank_accounts"] == employees == 12
