"""The records of processing: per app, what the environment's data it may receive and
where it may go (GDPR article 30)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from shared.scopes import Sensitivity


class RecordApp(BaseModel):
    client_id: str
    name: str
    publisher: str | None
    policy_uri: str | None


class RecordScope(BaseModel):
    scope: str
    title: str


class Category(BaseModel):
    """The scopes of one sensitivity that the app may receive."""

    sensitivity: Sensitivity
    scopes: list[RecordScope]


class RecordDebtor(BaseModel):
    id: uuid.UUID
    name: str


class ProcessingRecord(BaseModel):
    """One app's entry: what its live connections in the environment let it receive."""

    app: RecordApp
    categories: list[Category] = Field(
        description="the consented scopes of its live connections, by sensitivity, most "
        "sensitive first")
    debtors: list[RecordDebtor] = Field(description="the debtors it has a live connection of")
    employees: int = Field(description="how many employees its live connections cover")
    connections: int = Field(description="how many live connections it has")
    since: datetime = Field(description="when its oldest live connection was consented to")
    webhook_hosts: list[str] = Field(
        description="the hosts of its active webhook endpoints: where events about the "
        "data go")


class ProcessingRecords(BaseModel):
    data: list[ProcessingRecord]
    generated_at: datetime
