"""The event catalogue: every event type Koppel sends, what it means, the scope an app
needs to receive it, and the schema of its body. One source for `emit` (which refuses a
body its type's schema does not admit), the webhook subscription check, sync's OpenAPI
`webhooks` section and the public `GET /v1/event-types`.

Events are thin: ids and the names of what changed, never the data itself; an app reads
the data through the API with its own scopes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from shared.scopes import event_scopes


def rfc3339(value: datetime) -> str:
    """The one timestamp format of webhook bodies: UTC, milliseconds, `Z`."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


ChangedFields = Field(description="the names of the fields that changed")


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid")

    environment_id: uuid.UUID = Field(description="the customer environment")


class ConnectionData(_Data):
    debtor_id: uuid.UUID = Field(description="the debtor the connection is for")
    connection_id: uuid.UUID = Field(description="the connection (the grant)")
    changed_fields: list[str] = ChangedFields
    reason: Literal["access_review"] | None = Field(
        default=None, description="on `connection.revoked`: `access_review` when an "
        "access review revoked it (absent otherwise)")


class CompanyData(_Data):
    debtor_id: uuid.UUID = Field(description="the debtor, or the company's debtor")
    company_id: uuid.UUID | None = Field(
        default=None, description="the company; absent when the debtor itself changed")
    changed_fields: list[str] = ChangedFields


class EmployeeData(_Data):
    debtor_id: uuid.UUID
    company_id: uuid.UUID = Field(description="the employee's company")
    employee_id: uuid.UUID
    changed_fields: list[str] = ChangedFields


class EmploymentData(EmployeeData):
    employment_id: uuid.UUID
    action: Literal["ended"]


class PaymentData(EmployeeData):
    wage_component_id: uuid.UUID
    action: Literal["added", "ended"]


class BankAccountData(EmployeeData):
    bank_account_id: uuid.UUID


class LeaveData(EmployeeData):
    leave_request_id: uuid.UUID | None = Field(
        default=None, description="set when a leave request was created or changed status")
    leave_balance_id: uuid.UUID | None = Field(
        default=None, description="set when a leave balance changed")
    action: Literal["created", "status_changed", "balance_changed"]


class AbsenceData(EmployeeData):
    absence_id: uuid.UUID


class PayrollRunData(_Data):
    debtor_id: uuid.UUID
    company_id: uuid.UUID
    payroll_run_id: uuid.UUID


class EndpointDisabledData(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint_id: uuid.UUID = Field(description="the endpoint Koppel disabled")
    url: str = Field(description="its URL")
    reason: str = Field(description="why: it answered 410 Gone, or deliveries failed for "
                        "a day")
    disabled_at: str = Field(description="when: RFC 3339, UTC, milliseconds",
                             pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


class TestData(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint_id: uuid.UUID = Field(description="the endpoint the test was sent to")


@dataclass(frozen=True)
class EventType:
    name: str
    description: str
    data: type[BaseModel]

    @property
    def scopes(self) -> list[str]:
        """The read scopes of which an app needs one to receive it (a write scope implies
        its read scope); empty: every app with a connection it concerns receives it."""
        return sorted(event_scopes(self.name))

    @cached_property
    def message(self) -> type[BaseModel]:
        """The model of the whole webhook body."""
        title = "".join(part.title() for part in self.name.replace("_", ".").split("."))
        return create_model(
            f"{title}Event",
            __config__=ConfigDict(extra="forbid", title=f"{title}Event"),
            type=(Literal[self.name], Field(description="the event type")),  # type: ignore[arg-type]
            timestamp=(str, Field(
                description="when the change was committed: RFC 3339, UTC, milliseconds",
                pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")),
            data=(self.data, Field(description="ids and changed field names")),
        )

    def schema(self) -> dict[str, Any]:
        """The JSON Schema (2020-12) of the webhook body."""
        return self.message.model_json_schema()


def _types(*types: EventType) -> dict[str, EventType]:
    return {t.name: t for t in types}


CATALOGUE: dict[str, EventType] = _types(
    EventType("connection.created", "A user linked the app (a new connection).",
              ConnectionData),
    EventType("connection.updated", "A connection's scopes or companies changed.",
              ConnectionData),
    EventType("connection.suspended", "A connection was suspended: its tokens stop working "
              "until it is resumed.", ConnectionData),
    EventType("connection.resumed", "A suspended connection is active again.",
              ConnectionData),
    EventType("connection.expiring", "A connection expires soon (its consent lifetime "
              "ends; sent once per expiry, 14 days before by default). A user can renew it.",
              ConnectionData),
    EventType("connection.expired", "A connection's consent lifetime ran out: its tokens "
              "no longer work until a user renews it (the same connection id).",
              ConnectionData),
    EventType("connection.renewed", "An expired or expiring connection was renewed: it "
              "works again, with a new expiry.", ConnectionData),
    EventType("connection.revoked", "A connection ended for good: its tokens no longer "
              "work. Stop syncing it.", ConnectionData),
    EventType("company.updated", "A debtor's or a company's details changed.", CompanyData),
    EventType("employee.created", "An employee was added to a company.", EmployeeData),
    EventType("employee.updated", "An employee's personal details changed.", EmployeeData),
    EventType("employee.employment.changed", "An employment changed (for example, it ended).",
              EmploymentData),
    EventType("employee.payment.changed", "A wage component was added or ended.",
              PaymentData),
    EventType("employee.bankaccount.changed", "An employee's bank account changed.",
              BankAccountData),
    EventType("employee.leave.changed", "A leave request was created or changed status, or "
              "a leave balance changed.", LeaveData),
    EventType("employee.absence.changed", "A sickness absence was reported or changed "
              "(health data: only apps with employee.absence.read receive it).", AbsenceData),
    EventType("payroll.run.finalized", "A company's payroll run was finalized.",
              PayrollRunData),
    EventType("endpoint.disabled", "Koppel disabled another webhook endpoint of the app "
              "(it answered 410 Gone, or deliveries failed for a day); sent to the app's "
              "other active endpoints that subscribe to it.", EndpointDisabledData),
    EventType("webhook.test", "A test message, sent only when asked for "
              "(POST /v1/webhooks/{id}/test); not subscribable.", TestData),
)
TEST_EVENT = "webhook.test"
SUBSCRIBABLE = frozenset(CATALOGUE) - {TEST_EVENT}
ENDPOINT_DISABLED = "endpoint.disabled"
# What the change feed shows: the data events (connection and endpoint events go to
# webhooks only).
DATA_EVENTS = frozenset(name for name in SUBSCRIBABLE
                        if not name.startswith(("connection.", "endpoint.")))


def check_data(type: str, data: dict[str, Any]) -> None:
    """Refuse (KeyError, ValueError) an event type outside the catalogue or a body its
    schema does not admit: what is sent is always what the catalogue says."""
    CATALOGUE[type].data.model_validate(data)
