"""Koppel's table models, one file per table, all re-exported here."""

from shared.models.app import App, AppStatus
from shared.models.audit import AuditEvent, AuditHead
from shared.models.company import Company
from shared.models.connection import Connection, ConnectionCompany, ConnectionStatus
from shared.models.debtor import Debtor
from shared.models.employee import Employee
from shared.models.environment import Environment
from shared.models.event import Event
from shared.models.partner import Partner
from shared.models.signing_key import SigningKey
from shared.models.token import AuthorizationCode, RefreshToken, TokenFamily
from shared.models.user import DEFAULT_CONSENT_TEMPLATES, User, UserCompany, UserTemplate

__all__ = [
    "DEFAULT_CONSENT_TEMPLATES",
    "App",
    "AppStatus",
    "AuditEvent",
    "AuditHead",
    "AuthorizationCode",
    "Company",
    "Connection",
    "ConnectionCompany",
    "ConnectionStatus",
    "Debtor",
    "Employee",
    "Environment",
    "Event",
    "Partner",
    "RefreshToken",
    "SigningKey",
    "TokenFamily",
    "User",
    "UserCompany",
    "UserTemplate",
]
