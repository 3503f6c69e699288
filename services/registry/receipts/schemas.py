"""The bodies of the receipt lists and of a scope wording document."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel


class ReceiptOut(BaseModel):
    id: uuid.UUID
    act: str
    issued_at: datetime
    jws: str


class ReceiptList(BaseModel):
    data: list[ReceiptOut]
    next_cursor: str | None


class WordedScope(BaseModel):
    scope: str
    title: str
    description: str
    lang: str
    sensitivity: str


class WordingDocument(BaseModel):
    """A stored scope wording: its SHA-256 is the hash it is served under."""

    scopes: list[WordedScope]
