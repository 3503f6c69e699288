"""The made-up names of the demo environment: deterministic, so a re-seed matches."""

from __future__ import annotations

import re
from datetime import date

from cli.output import CliError
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
MAX_LABEL = 63  # one DNS label


def slug_for(name: str) -> str:
    """The lower-case DNS label that demo emails and the client id derive from."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:MAX_LABEL].strip("-")
    if not slug:
        raise CliError(f"the demo name {name!r} needs at least one letter or digit")
    return slug


def user_email(template: UserTemplate, slug: str) -> str:
    """The login of the demo user with `template`."""
    return f"{template.value}@{slug}.koppel.test"


def client_id_for(slug: str) -> str:
    """The client id of the demo environment's first-party client."""
    return f"koppel-web-{slug}"


def debtor_number(debtor_index: int) -> str:
    return f"D{debtor_index + 1}"


def company_number(debtor_index: int, company_index: int) -> str:
    return f"{debtor_index + 1}{company_index + 1:02d}"


def company_details(debtor_index: int, company_index: int) -> dict[str, str]:
    """Chamber of commerce number and address of a demo company."""
    n = debtor_index * 2 + company_index
    return {
        "chamber_of_commerce_number": f"{61_000_000 + 1_379 * (n + 1):08d}",
        "address": f"{STREETS[n % len(STREETS)]} {n * 7 + 3}, {CITIES[n % len(CITIES)]}",
    }


def employee_number(index: int) -> str:
    return f"{index + 1:04d}"


def employee_details(slug: str, company_no: str, index: int) -> dict[str, object]:
    """Name, birth date and email of the `index`-th demo employee of a company."""
    seed = int(company_no) + index
    first = FIRST_NAMES[(index * 3 + seed) % len(FIRST_NAMES)]
    last = LAST_NAMES[(index * 7 + seed * 3) % len(LAST_NAMES)]
    local = f"{first}.{last}".lower().replace(" ", "")
    return {
        "first_name": first,
        "last_name": last,
        "birth_date": date(1960 + (seed * 7) % 40, 1 + (seed * 5) % 12, 1 + (seed * 11) % 28),
        "email": f"{local}.{company_no}{employee_number(index)}@{slug}.koppel.test",
    }
