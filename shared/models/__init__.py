"""Koppel's table models, one file per table, all re-exported here."""

from shared.models.absence import Absence
from shared.models.access_review import (
    AccessReview,
    AccessReviewItem,
    AccessReviewStatus,
    ReviewDecision,
    Reviewer,
)
from shared.models.app import App, AppStatus
from shared.models.app_logo import AppLogo
from shared.models.app_policy import AppState, EnvironmentAppPolicy
from shared.models.attestation_key import AttestationKey
from shared.models.audit import AuditCheckpoint, AuditEvent, AuditHead
from shared.models.bank_account import BankAccount
from shared.models.company import Company
from shared.models.connection import (
    Connection,
    ConnectionCompany,
    ConnectionStatus,
    is_expired,
    is_live,
)
from shared.models.consent_receipt import ConsentReceipt
from shared.models.consent_request import (
    ConsentRequest,
    ConsentRequestCompany,
    ConsentRequestStatus,
)
from shared.models.data_access import (
    AccessAction,
    DataAccess,
    DataAccessBatch,
    entry_id,
)
from shared.models.debtor import Debtor
from shared.models.employee import Employee
from shared.models.employment import Employment
from shared.models.environment import Environment
from shared.models.event import Event
from shared.models.idempotency_key import IdempotencyKey
from shared.models.leave_balance import LeaveBalance
from shared.models.leave_request import LeaveRequest, LeaveRequestStatus, LeaveType
from shared.models.partner import Partner
from shared.models.payroll_run import PayrollRun
from shared.models.scope_wording import ScopeWording
from shared.models.signing_key import SigningKey
from shared.models.token import AuthorizationCode, RefreshToken, TokenFamily
from shared.models.user import DEFAULT_CONSENT_TEMPLATES, User, UserCompany, UserTemplate
from shared.models.wage_component import WageComponent
from shared.models.webhook_attempt import WebhookAttempt
from shared.models.webhook_delivery import DeliveryStatus, WebhookDelivery
from shared.models.webhook_endpoint import (
    SignatureScheme,
    WebhookEndpoint,
    WebhookEndpointStatus,
)

__all__ = [
    "DEFAULT_CONSENT_TEMPLATES",
    "Absence",
    "AccessAction",
    "AccessReview",
    "AccessReviewItem",
    "AccessReviewStatus",
    "App",
    "AppLogo",
    "AppState",
    "AppStatus",
    "AttestationKey",
    "AuditCheckpoint",
    "AuditEvent",
    "AuditHead",
    "AuthorizationCode",
    "BankAccount",
    "Company",
    "Connection",
    "ConnectionCompany",
    "ConnectionStatus",
    "ConsentReceipt",
    "ConsentRequest",
    "ConsentRequestCompany",
    "ConsentRequestStatus",
    "DataAccess",
    "DataAccessBatch",
    "Debtor",
    "DeliveryStatus",
    "Employee",
    "Employment",
    "Environment",
    "EnvironmentAppPolicy",
    "Event",
    "IdempotencyKey",
    "LeaveBalance",
    "LeaveRequest",
    "LeaveRequestStatus",
    "LeaveType",
    "Partner",
    "PayrollRun",
    "RefreshToken",
    "ReviewDecision",
    "Reviewer",
    "ScopeWording",
    "SignatureScheme",
    "SigningKey",
    "TokenFamily",
    "User",
    "UserCompany",
    "UserTemplate",
    "WageComponent",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEndpointStatus",
    "entry_id",
    "is_expired",
    "is_live",
]
