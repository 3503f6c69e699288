"""The words on the login, consent and error pages, in Dutch and English."""

from __future__ import annotations

from datetime import date

from fastapi import Request

LANGUAGES = ("nl", "en")

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "login_title": "Log in",
        "email": "Email address",
        "password": "Password",
        "login_button": "Log in",
        "login_failed": "The email address or password is not correct.",
        "too_many": "Too many failed attempts; try again in {seconds} seconds.",
        "login_for_app": "Log in to link {app}.",
        "consent_title": "Link {app}",
        "consent_intro": "{app} by {publisher} asks for access to the following data:",
        "consent_new_only": "You linked {app} before. It now also asks for:",
        "consent_kept": "It keeps access to what you granted before:",
        "consent_dropped": "It will no longer have access to:",
        "renew_title": "Renew the link with {app}",
        "renew_intro": "Your link with {app} has expired. Renew it to give {app} access "
                       "again to the same data and companies:",
        "renew": "Renew",
        "debtor": "Client",
        "companies": "Companies this link covers",
        "allow": "Allow",
        "deny": "Deny",
        "links": "About this app",
        "website": "Website",
        "privacy": "Privacy policy",
        "terms": "Terms of use",
        "sensitivity_normal": "normal",
        "sensitivity_personal": "personal data",
        "sensitivity_sensitive": "sensitive",
        "sensitivity_special_category": "special category (health)",
        "sensitivity_none": "",
        "not_allowed_title": "You cannot link apps",
        "not_allowed": "Your login ({template}) may not link third-party apps in this "
                       "environment. Logins that can: {allowed}.",
        "return_to_app": "Return to the app",
        "error_title": "This link does not work",
        "error_intro": "The request to log in or link an app is not valid.",
        "logged_in": "You are logged in as {email}.",
        "logged_out": "You are logged out.",
        "logout_title": "Log out?",
        "logout_question": "An app asks to log you out of Koppel. You stay logged in until "
                           "you confirm.",
        "logout": "Log out",
        "no_companies": "You reach no companies in this client, so there is nothing to link.",
        "logged_in_as": "Logged in as {name} ({email}).",
        "sandbox_notice": "Sandbox: this environment holds made-up test data, not a "
                          "customer's.",
        "switch_account": "Not you? Use another account",
        "lasts_until": "This link lasts {days} days, until {date}; after that {app} has to "
                       "ask you again.",
        "lasts_forever": "This link lasts until you revoke it.",
        "revoke_where": "You can revoke it at any time in Manage apps.",
        "manage_apps": "Manage apps",
        "logo_alt": "Logo of {app}",
        "published_by": "Published by {publisher}",
        "approval_title": "Ask for approval to link {app}",
        "approval_intro": "Your environment requires an approval before {app} may be "
                          "linked with your login. An accountant, or someone who may link "
                          "apps for your client, decides. If approved, {app} gets access to:",
        "approval_pending_already": "You already asked for this; that request is still "
                                    "waiting for a decision. Asking again updates it.",
        "justification": "Why do you need {app}?",
        "justification_missing": "Please say why you need this app (at most 1000 "
                                 "characters).",
        "request_approval": "Ask for approval",
        "cancel": "Cancel",
        "approval_not_allowed": "{app} needs an approval in this environment, and your "
                                "login ({template}) may not ask for one.",
    },
    "nl": {
        "login_title": "Inloggen",
        "email": "E-mailadres",
        "password": "Wachtwoord",
        "login_button": "Inloggen",
        "login_failed": "Het e-mailadres of wachtwoord klopt niet.",
        "too_many": "Te veel mislukte pogingen; probeer het over {seconds} seconden opnieuw.",
        "login_for_app": "Log in om {app} te koppelen.",
        "consent_title": "{app} koppelen",
        "consent_intro": "{app} van {publisher} vraagt toegang tot de volgende gegevens:",
        "consent_new_only": "Je hebt {app} al eerder gekoppeld. De app vraagt nu ook:",
        "consent_kept": "De app houdt toegang tot wat je eerder hebt toegestaan:",
        "consent_dropped": "De app heeft straks geen toegang meer tot:",
        "renew_title": "Koppeling met {app} verlengen",
        "renew_intro": "Je koppeling met {app} is verlopen. Verleng haar om {app} weer "
                       "toegang te geven tot dezelfde gegevens en bedrijven:",
        "renew": "Verlengen",
        "debtor": "Debiteur",
        "companies": "Bedrijven waarvoor deze koppeling geldt",
        "allow": "Toestaan",
        "deny": "Weigeren",
        "links": "Over deze app",
        "website": "Website",
        "privacy": "Privacyverklaring",
        "terms": "Gebruiksvoorwaarden",
        "sensitivity_normal": "normaal",
        "sensitivity_personal": "persoonsgegevens",
        "sensitivity_sensitive": "gevoelig",
        "sensitivity_special_category": "bijzondere categorie (gezondheid)",
        "sensitivity_none": "",
        "not_allowed_title": "Je kunt geen apps koppelen",
        "not_allowed": "Met jouw login ({template}) kun je in deze omgeving geen apps van "
                       "derden koppelen. Logins die dat wel kunnen: {allowed}.",
        "return_to_app": "Terug naar de app",
        "error_title": "Deze link werkt niet",
        "error_intro": "Het verzoek om in te loggen of een app te koppelen is niet geldig.",
        "logged_in": "Je bent ingelogd als {email}.",
        "logged_out": "Je bent uitgelogd.",
        "logout_title": "Uitloggen?",
        "logout_question": "Een app vraagt je uit te loggen bij Koppel. Je blijft ingelogd "
                           "tot je dat bevestigt.",
        "logout": "Uitloggen",
        "no_companies": "Je hebt bij deze debiteur geen bedrijven, dus er valt niets te koppelen.",
        "logged_in_as": "Ingelogd als {name} ({email}).",
        "sandbox_notice": "Sandbox: deze omgeving bevat verzonnen testgegevens, niet die "
                          "van een klant.",
        "switch_account": "Niet jij? Gebruik een ander account",
        "lasts_until": "Deze koppeling geldt {days} dagen, tot {date}; daarna moet {app} het "
                       "je opnieuw vragen.",
        "lasts_forever": "Deze koppeling geldt tot je haar intrekt.",
        "revoke_where": "Je kunt haar altijd intrekken via Apps beheren.",
        "manage_apps": "Apps beheren",
        "logo_alt": "Logo van {app}",
        "published_by": "Uitgegeven door {publisher}",
        "approval_title": "Goedkeuring vragen om {app} te koppelen",
        "approval_intro": "In jouw omgeving is goedkeuring nodig voordat {app} met jouw "
                          "login gekoppeld mag worden. Een accountant, of iemand die voor "
                          "jouw debiteur apps mag koppelen, beslist. Na goedkeuring krijgt "
                          "{app} toegang tot:",
        "approval_pending_already": "Je hebt dit al gevraagd; dat verzoek wacht nog op een "
                                    "beslissing. Opnieuw vragen werkt het bij.",
        "justification": "Waarom heb je {app} nodig?",
        "justification_missing": "Geef aan waarom je deze app nodig hebt (hoogstens 1000 "
                                 "tekens).",
        "request_approval": "Goedkeuring vragen",
        "cancel": "Annuleren",
        "approval_not_allowed": "Voor {app} is in deze omgeving goedkeuring nodig, en met "
                                "jouw login ({template}) kun je die niet vragen.",
    },
}

MONTHS = {
    "en": ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"),
    "nl": ("januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus",
           "september", "oktober", "november", "december"),
}


def long_date(when: date, lang: str) -> str:
    """A date as people write it: "4 March 2027", "4 maart 2027" (UTC dates)."""
    return f"{when.day} {MONTHS[lang][when.month - 1]} {when.year}"


TEMPLATE_NAMES = {
    "en": {"accountant": "Accountant", "master_client": "Master Client",
           "company": "Company login", "hr_manager": "HR Manager (System)",
           "payroll_hr_manager": "General Manager Payroll & HR", "employee": "Employee"},
    "nl": {"accountant": "Accountant", "master_client": "Master Client",
           "company": "Bedrijfslogin", "hr_manager": "HR Manager (Systeem)",
           "payroll_hr_manager": "Algemeen Manager Salaris & HR", "employee": "Werknemer"},
}


def pick_language(request: Request, ui_locales: str | None = None) -> str:
    """`ui_locales` first (OpenID Connect), then Accept-Language; English by default."""
    for tag in (ui_locales or "").split():
        if tag.split("-")[0].lower() in LANGUAGES:
            return tag.split("-")[0].lower()
    header = request.headers.get("accept-language", "")
    weighted = []
    for part in header.split(","):
        pieces = part.strip().split(";q=")
        try:
            weight = float(pieces[1]) if len(pieces) > 1 else 1.0
        except ValueError:
            continue
        weighted.append((weight, pieces[0].split("-")[0].lower()))
    for _, lang in sorted(weighted, reverse=True):
        if lang in LANGUAGES:
            return lang
    return "en"
