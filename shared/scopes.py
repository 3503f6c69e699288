"""The scope catalogue (docs/product.md section 4): one source for consent pages, the public
catalogue, registration checks and resource servers.

`<area>.<slice>` reads and writes, `<area>.<slice>.read` only reads; a write scope
implies its read scope.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum


class Sensitivity(StrEnum):
    NORMAL = "normal"
    PERSONAL = "personal"
    SENSITIVE = "sensitive"
    SPECIAL_CATEGORY = "special_category"
    NONE = "none"


# The levels that views flag and receipts mark as sensitive (GDPR: financial data and
# special categories such as health data).
SENSITIVE_LEVELS = frozenset({Sensitivity.SENSITIVE, Sensitivity.SPECIAL_CATEGORY})


class ScopeKind(StrEnum):
    CONSENT = "consent"  # a user grants it on the consent page
    APP = "app"  # a partner app gets it with client credentials, never through authorize
    FIRST_PARTY = "first_party"  # the SaaS's own apps only


@dataclass(frozen=True)
class Scope:
    name: str
    title: dict[str, str]
    description: dict[str, str]
    sensitivity: Sensitivity
    kind: ScopeKind = ScopeKind.CONSENT
    events: tuple[str, ...] = field(default=())

    @property
    def read_only(self) -> bool:
        return self.name.endswith(".read")

    def localized(self, lang: str) -> dict[str, str]:
        """Title, description and sensitivity in `lang` ("nl" or "en")."""
        lang = lang if lang in self.title else "en"
        return {
            "scope": self.name,
            "title": self.title[lang],
            "description": self.description[lang],
            "sensitivity": self.sensitivity.value,
        }


def _pair(
    area: str, nl: tuple[str, str], en: tuple[str, str], sensitivity: Sensitivity,
    events: tuple[str, ...],
) -> list[Scope]:
    """A read-write scope and its read-only twin."""
    write = Scope(
        area,
        {"nl": f"{nl[0]} inzien en wijzigen", "en": f"View and change {en[0]}"},
        {"nl": f"{nl[1]} Mag deze gegevens ook wijzigen.",
         "en": f"{en[1]} May also change this data."},
        sensitivity, events=events,
    )
    read = Scope(
        f"{area}.read",
        {"nl": f"{nl[0]} inzien", "en": f"View {en[0]}"},
        {"nl": nl[1], "en": en[1]},
        sensitivity, events=events,
    )
    return [write, read]


_CATALOGUE: list[Scope] = [
    *_pair(
        "company.info",
        ("Debiteuren en bedrijven",
         "Naam, nummer, adres en KvK-nummer van debiteuren en bedrijven."),
        ("debtors and companies", "Name, number, address and chamber of commerce number of "
         "debtors and companies."),
        Sensitivity.NORMAL, ("company.updated",),
    ),
    *_pair(
        "employee.info",
        ("Persoonsgegevens van werknemers", "Naam, geboortedatum, adres en contactgegevens."),
        ("employee personal details", "Name, birth date, address and contact details."),
        Sensitivity.PERSONAL, ("employee.created", "employee.updated"),
    ),
    *_pair(
        "employee.employment",
        ("Dienstverbanden", "Contracten: begin, einde, uren, functie en afdeling."),
        ("employments", "Contracts: start, end, hours, function and department."),
        Sensitivity.PERSONAL, ("employee.employment.changed",),
    ),
    *_pair(
        "employee.payment",
        ("Salaris en looncomponenten", "Salaris en looncomponenten van werknemers."),
        ("salary and wage components", "Salaries and wage components of employees."),
        Sensitivity.SENSITIVE, ("employee.payment.changed",),
    ),
    *_pair(
        "employee.bankaccount",
        ("Bankrekeningen", "IBAN en tenaamstelling van werknemers."),
        ("bank accounts", "IBAN and account holder of employees."),
        Sensitivity.SENSITIVE, ("employee.bankaccount.changed",),
    ),
    *_pair(
        "employee.leave",
        ("Verlof", "Verlofsaldi en verlofaanvragen."),
        ("leave", "Leave balances and leave requests."),
        Sensitivity.PERSONAL, ("employee.leave.changed",),
    ),
    Scope(
        "employee.absence.read",
        {"nl": "Ziekteverzuim inzien", "en": "View sickness absence"},
        {"nl": "Ziekmeldingen en herstel: gezondheidsgegevens, een bijzondere categorie.",
         "en": "Sickness reports and recovery: health data, a special category."},
        Sensitivity.SPECIAL_CATEGORY, events=("employee.absence.changed",),
    ),
    Scope(
        "payroll.run.read",
        {"nl": "Verloningen inzien", "en": "View payroll runs"},
        {"nl": "Verloningen en loonstrooktotalen.", "en": "Payroll runs and payslip totals."},
        Sensitivity.SENSITIVE, events=("payroll.run.finalized",),
    ),
    Scope(
        "user.info.read",
        {"nl": "Jouw naam en e-mailadres", "en": "Your name and email address"},
        {"nl": "De naam en het e-mailadres van jou als gebruiker.",
         "en": "Your name and email address as a user."},
        Sensitivity.PERSONAL,
    ),
    Scope(
        "openid",
        {"nl": "Je aanmelden", "en": "Sign you in"},
        {"nl": "Bevestigen wie je bent.", "en": "Confirm who you are."},
        Sensitivity.PERSONAL,
    ),
    Scope(
        "profile",
        {"nl": "Je profiel", "en": "Your profile"},
        {"nl": "Je naam.", "en": "Your name."},
        Sensitivity.PERSONAL,
    ),
    Scope(
        "email",
        {"nl": "Je e-mailadres", "en": "Your email address"},
        {"nl": "Het e-mailadres waarmee je inlogt.", "en": "The email address you log in with."},
        Sensitivity.PERSONAL,
    ),
    Scope(
        "offline_access",
        {"nl": "Toegang als je er niet bent", "en": "Access while you are away"},
        {"nl": "De app houdt toegang zonder dat je opnieuw inlogt, tot je de koppeling intrekt.",
         "en": "The app keeps access without you logging in again, until you revoke the link."},
        Sensitivity.NONE,
    ),
    Scope(
        "webhooks.manage",
        {"nl": "Webhooks beheren", "en": "Manage webhooks"},
        {"nl": "De eigen webhook-endpoints van de app.", "en": "The app's own webhook endpoints."},
        Sensitivity.NONE, kind=ScopeKind.APP,
    ),
    # Grant Management for OAuth 2.0 (the OpenID draft): a grant is a connection.
    Scope(
        "grant_management_query",
        {"nl": "Koppelingen opvragen", "en": "Query grants"},
        {"nl": "De status en inhoud van de eigen koppelingen (grants) van de app.",
         "en": "The status and content of the app's own connections (grants)."},
        Sensitivity.NONE, kind=ScopeKind.APP,
    ),
    Scope(
        "grant_management_revoke",
        {"nl": "Koppelingen intrekken", "en": "Revoke grants"},
        {"nl": "De eigen koppelingen (grants) van de app intrekken.",
         "en": "Revoke the app's own connections (grants)."},
        Sensitivity.NONE, kind=ScopeKind.APP,
    ),
    Scope(
        "sandboxes.manage",
        {"nl": "Sandboxes beheren", "en": "Manage sandboxes"},
        {"nl": "De eigen sandbox-omgevingen van de partner.",
         "en": "The partner's own sandbox environments."},
        Sensitivity.NONE, kind=ScopeKind.APP,
    ),
    *[
        Scope(name, {"nl": name, "en": name}, {"nl": text_nl, "en": text_en},
              Sensitivity.NONE, kind=ScopeKind.FIRST_PARTY)
        for name, text_nl, text_en in [
            ("connections.read", "Eigen koppelingen inzien.", "View own connections."),
            ("connections.manage", "Eigen koppelingen intrekken.", "Revoke own connections."),
            ("environment.connections.read", "Alle koppelingen van de omgeving inzien.",
             "View every connection of the environment."),
            ("environment.connections.manage", "Koppelingen van de omgeving beheren.",
             "Govern the environment's connections."),
            ("directory.manage", "Omgevingen, debiteuren, bedrijven en gebruikers beheren.",
             "Provision environments, debtors, companies and users."),
        ]
    ],
]

SCOPES: dict[str, Scope] = {scope.name: scope for scope in _CATALOGUE}
CONSENT_SCOPES: frozenset[str] = frozenset(
    s.name for s in _CATALOGUE if s.kind is ScopeKind.CONSENT
)
APP_SCOPES: frozenset[str] = frozenset(s.name for s in _CATALOGUE if s.kind is ScopeKind.APP)
FIRST_PARTY_SCOPES: frozenset[str] = frozenset(
    s.name for s in _CATALOGUE if s.kind is ScopeKind.FIRST_PARTY
)
# What a client credentials token can carry: a partner app's own scopes, and provisioning
# for the SaaS's own apps (services/auth/oauth2/clients.py).
CLIENT_CREDENTIALS_SCOPES: frozenset[str] = APP_SCOPES | {"directory.manage"}
# What the SaaS's own apps register: every scope but the partner apps' own.
FIRST_PARTY_APP_SCOPES: tuple[str, ...] = tuple(
    s.name for s in _CATALOGUE if s.kind is not ScopeKind.APP
)
# Consent scopes that say who the user is or keep access; they reach no payroll data.
IDENTITY_SCOPES: frozenset[str] = frozenset({"openid", "profile", "email", "offline_access",
                                              "user.info.read"})
DATA_SCOPES: frozenset[str] = CONSENT_SCOPES - IDENTITY_SCOPES


def implied(scopes: Iterable[str]) -> set[str]:
    """The scopes with the read scope of every write scope added."""
    result = set(scopes)
    for name in list(result):
        if f"{name}.read" in SCOPES:
            result.add(f"{name}.read")
    return result


def grants(scopes: Iterable[str], needed: str) -> bool:
    """Whether a token with `scopes` may use what `needed` protects."""
    return needed in implied(scopes)


def granting_scope(scopes: Iterable[str], needed: str) -> str | None:
    """Which of `scopes` lets a token use what `needed` protects: `needed` itself, or the
    write scope whose read scope it is; None if none does."""
    held = set(scopes)
    if needed in held:
        return needed
    if needed.endswith(".read") and needed[:-len(".read")] in held:
        return needed[:-len(".read")]
    return None


def parse_scope(value: str | None) -> list[str]:
    """A space-separated scope string as an ordered list without duplicates."""
    return list(dict.fromkeys((value or "").split()))


def event_scopes(event_type: str) -> set[str]:
    """The read scopes that let an app receive `event_type` (write scopes imply them)."""
    return {s.name for s in _CATALOGUE if event_type in s.events and s.read_only}
