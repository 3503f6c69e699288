"""The made-up Dutch payroll data of a demo environment or a partner's sandbox:
deterministic, so a re-seed matches. Emails lie on the domain the caller gives."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from shared.models import UserTemplate

# (debtor name, its two companies)
DEBTORS: list[tuple[str, list[str]]] = [
    ("Bakkerij Jansen", ["Bakkerij Jansen B.V.", "Jansen Winkels B.V."]),
    ("Fietsfabriek Visser", ["Visser Productie B.V.", "Visser Verkoop B.V."]),
]
STREETS = ["Dorpsstraat", "Kerkweg", "Molenlaan", "Stationsplein"]
CITIES = ["Utrecht", "Zwolle", "Haarlem", "Breda"]
FIRST_NAMES = ["Anna", "Daan", "Emma", "Lucas", "Sanne", "Noah", "Julia", "Sem", "Fleur", "Milan"]
LAST_NAMES = [
    "de Vries", "Jansen", "Bakker", "Visser", "Smit",
    "Meijer", "Mulder", "de Boer", "Bos", "Peters",
]
USER_NAMES: dict[UserTemplate, str] = {
    UserTemplate.ACCOUNTANT: "Demo accountant",
    UserTemplate.MASTER_CLIENT: "Demo master client",
    UserTemplate.COMPANY: "Demo company login",
    UserTemplate.HR_MANAGER: "Demo HR manager",
    UserTemplate.PAYROLL_HR_MANAGER: "Demo payroll and HR manager",
}  # the employee login takes its employee's name


def user_email(template: UserTemplate, domain: str) -> str:
    """The login of the demo user with `template`."""
    return f"{template.value}@{domain}"


def debtor_number(debtor_index: int) -> str:
    return f"D{debtor_index + 1}"


def company_number(debtor_index: int, company_index: int) -> str:
    return f"{debtor_index + 1}{company_index + 1:02d}"


def company_details(debtor_index: int, company_index: int) -> dict[str, Any]:
    """Chamber of commerce number and address of a demo company."""
    n = debtor_index * 2 + company_index
    return {
        "chamber_of_commerce_number": f"{61_000_000 + 1_379 * (n + 1):08d}",
        "address": f"{STREETS[n % len(STREETS)]} {n * 7 + 3}, {CITIES[n % len(CITIES)]}",
    }


def employee_number(index: int) -> str:
    return f"{index + 1:04d}"


def employee_details(domain: str, company_no: str, index: int) -> dict[str, Any]:
    """Name, birth date and email of the `index`-th demo employee of a company."""
    seed = int(company_no) + index
    first = FIRST_NAMES[(index * 3 + seed) % len(FIRST_NAMES)]
    last = LAST_NAMES[(index * 7 + seed * 3) % len(LAST_NAMES)]
    local = f"{first}.{last}".lower().replace(" ", "")
    return {
        "first_name": first,
        "last_name": last,
        "birth_date": date(1960 + (seed * 7) % 40, 1 + (seed * 5) % 12, 1 + (seed * 11) % 28),
        "email": f"{local}.{company_no}{employee_number(index)}@{domain}",
    }


FUNCTIONS = ["Baker", "Sales assistant", "Assembler", "Planner", "Bookkeeper", "Driver"]
DEPARTMENTS = ["Production", "Sales", "Logistics", "Office"]
LEAVE_YEAR = 2026
PAYROLL_PERIODS = ["2026-01", "2026-02", "2026-03"]


def _seed(company_no: str, index: int) -> int:
    return int(company_no) + index


def employment_details(company_no: str, index: int) -> dict[str, object]:
    """Start, hours, function and department of a demo employee's one employment; every
    fifth employee's ended last year."""
    seed = _seed(company_no, index)
    return {
        "start_date": date(2015 + seed % 10, 1 + seed % 12, 1),
        "end_date": date(2025, 12, 31) if index % 5 == 4 else None,
        "hours_per_week": float(24 + (seed * 4) % 17),
        "function": FUNCTIONS[seed % len(FUNCTIONS)],
        "department": DEPARTMENTS[seed % len(DEPARTMENTS)],
    }


def wage_components(company_no: str, index: int) -> list[dict[str, Any]]:
    """A monthly salary and a travel allowance, amounts in cents."""
    seed = _seed(company_no, index)
    start = date(2026, 1, 1)
    return [
        {"code": "SAL", "description": "Monthly salary", "amount_cents": 250_000 + seed * 7_300,
         "valid_from": start},
        {"code": "TRV", "description": "Travel allowance", "amount_cents": 4_500 + seed * 110,
         "valid_from": start},
    ]


def iban(company_no: str, index: int) -> str:
    """A Dutch IBAN with valid check digits (bank code KOPP, not a real bank)."""
    bban = f"KOPP{int(company_no) * 10_000 + index + 1:010d}"
    digits = "".join(str(int(ch, 36)) for ch in bban + "NL00")
    return f"NL{98 - int(digits) % 97:02d}{bban}"


def leave_balances(company_no: str, index: int) -> list[dict[str, object]]:
    seed = _seed(company_no, index)
    return [
        {"leave_type": "statutory", "year": LEAVE_YEAR, "balance_hours": float(80 + seed % 80)},
        {"leave_type": "extra", "year": LEAVE_YEAR, "balance_hours": float(seed % 40)},
    ]


def leave_requests(company_no: str, index: int) -> list[dict[str, object]]:
    """An approved summer week for everyone; every second employee also asked for a day
    off in the autumn that nobody has decided yet."""
    seed = _seed(company_no, index)
    summer = date(LEAVE_YEAR, 7, 6 + 7 * (seed % 4))
    rows: list[dict[str, object]] = [
        {"leave_type": "statutory", "start_date": summer,
         "end_date": summer + timedelta(days=4), "hours": 40.0, "status": "approved",
         "note": "Summer holiday"}]
    if index % 2 == 0:
        day = date(LEAVE_YEAR, 10, 1 + seed % 28)
        rows.append({"leave_type": "extra", "start_date": day, "end_date": day, "hours": 8.0,
                     "status": "requested", "note": None})
    return rows


def absences(company_no: str, index: int) -> list[dict[str, object]]:
    """A past, closed sickness absence for every third employee."""
    if index % 3 != 1:
        return []
    seed = _seed(company_no, index)
    return [{"start_date": date(2026, 2, 1 + seed % 20), "end_date": date(2026, 2, 23),
             "percentage": 100 if seed % 2 else 50}]


def payroll_run(period: str, employees: list[int]) -> dict[str, Any]:
    """A finalized payroll run's totals for the salaries of `employees` (amounts in cents)."""
    gross = sum(employees)
    return {"period": period, "status": "finalized", "employee_count": len(employees),
            "gross_total_cents": gross, "net_total_cents": gross * 68 // 100}
