from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import String
from sqlmodel import Field, SQLModel

from shared.models._fields import id_field, json_field, timestamp_field


class Environment(SQLModel, table=True):
    """The tenant: one customer's whole account."""

    __tablename__ = "environments"

    id: uuid.UUID = id_field()
    name: str = Field(max_length=200)
    # User templates that may consent to third-party apps; None means the default of
    # docs/product.md section 3.
    consent_templates: list[str] | None = json_field(default_factory=lambda: None, nullable=True)
    # A partner's sandbox (synthetic data to try its apps on) when set: the partner that
    # owns it. Only that partner's apps may be linked to it, and it never shows up in
    # what customers see (shared/policy/sandboxes.py).
    sandbox_partner_id: uuid.UUID | None = Field(default=None, foreign_key="partners.id",
                                                 index=True)
    # The consent lifetime (shared/policy/lifetime.py): days a connection lasts before it
    # must be renewed (None: no expiry), and shorter lifetimes by scope sensitivity
    # ({"special_category": 90}); the shortest that applies wins.
    consent_lifetime_days: int | None = Field(default=None)
    consent_lifetime_days_by_sensitivity: dict[str, int] | None = json_field(
        default_factory=lambda: None, nullable=True)
    # Approval requests (shared/policy/approvals.py): the state of an app the app policy
    # has no entry for, and the templates that may ask for an app they may not consent
    # to (None: the consent templates).
    default_app_state: str = Field(default="allowed", sa_type=String(20))
    approval_request_templates: list[str] | None = json_field(default_factory=lambda: None,
                                                             nullable=True)
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()

    @property
    def sandbox(self) -> bool:
        """Whether this is a partner's sandbox rather than a customer's environment."""
        return self.sandbox_partner_id is not None
