"""The JSON of the login and consent challenge API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ClientInfo(BaseModel):
    client_id: str
    name: str
    publisher: str | None = None
    client_uri: str | None = None
    policy_uri: str | None = None
    tos_uri: str | None = None


class ScopeInfo(BaseModel):
    scope: str
    title: str
    description: str
    sensitivity: str


class LoginRequest(BaseModel):
    challenge: str
    client: ClientInfo
    requested_scopes: list[str]
    login_hint: str = ""
    ui_locales: str | None = None


class AcceptLogin(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=320, description="the user's email")
    password: str = Field(min_length=1, max_length=1024)
    remote_address: str | None = Field(
        default=None,
        max_length=64,
        description="the end user's IP address, for per-address limits on failed attempts",
    )


class Reject(BaseModel):
    model_config = ConfigDict(extra="forbid")

    error: str = Field(
        default="access_denied", pattern="^(access_denied|login_required|consent_required)$"
    )
    error_description: str = Field(
        default="", max_length=300, pattern=r"^[\x20-\x21\x23-\x5b\x5d-\x7e]*$"
    )


class Redirect(BaseModel):
    redirect_to: str = Field(description="where the frontend sends the browser next")


class CompanyInfo(BaseModel):
    id: str
    name: str


class DebtorInfo(BaseModel):
    id: str
    name: str
    companies: list[CompanyInfo]


class UserInfo(BaseModel):
    id: str
    email: str
    name: str
    template: str


class ConsentRequest(BaseModel):
    challenge: str
    client: ClientInfo
    user: UserInfo
    state: Literal["consent", "renew", "approval_required"] = Field(
        default="consent", description="what to ask the person: consent, a renewal, or "
        "(approval_required) a justification for an approval request, to be sent to "
        "`/request-approval`; the scopes, debtor and companies are then what the request "
        "would cover")
    approval_pending: bool = Field(
        default=False, description="approval_required: the user's earlier request for "
        "this app is still pending (asking again updates it)")
    previously_linked: bool
    renew: bool = Field(
        default=False, description="the link expired: ask the user to renew it, with its "
        "own scopes and companies (shown here); accepting renews it (the debtor and "
        "companies sent are not used). When the request also changes the link (new or "
        "dropped scopes) the accept answers 422 after the renewal: read the consent "
        "request again, it asks about the change")
    scopes: list[ScopeInfo] = Field(description="the scopes to ask consent for (new ones "
                                    "only; for a renewal, the link's scopes)")
    kept_scopes: list[ScopeInfo] = Field(
        default_factory=list, description="scopes granted before that the link keeps")
    dropped_scopes: list[ScopeInfo] = Field(
        default_factory=list,
        description="scopes granted before that the link loses (grant_management_action "
                    "replace)")
    debtors: list[DebtorInfo]
    expires_at: datetime | None = Field(
        default=None, description="when the link would expire if accepted now (the "
        "environment's consent lifetime for these scopes); null: it lasts until revoked")


class AcceptConsent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    debtor_id: uuid.UUID
    company_ids: list[uuid.UUID] = Field(min_length=1, max_length=1000)


class RequestApproval(BaseModel):
    model_config = ConfigDict(extra="forbid")

    justification: str = Field(min_length=1, max_length=1000,
                                description="why the user needs the app")
