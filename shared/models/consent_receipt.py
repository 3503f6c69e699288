from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Index, Text
from sqlmodel import Field, SQLModel

from shared.models._fields import id_field, timestamp_field


class ConsentReceipt(SQLModel, table=True):
    """A signed consent receipt (shared/receipts/): one per consent act on a connection,
    chained to the connection's previous receipt. `jws` is the full receipt; `partner_jws`
    the same receipt signed without the consenting user's fields, for the app."""

    __tablename__ = "consent_receipts"
    __table_args__ = (
        # One chain per connection, listed in its order; the unique pair also refuses a
        # second receipt that names the same previous one.
        Index("uq_consent_receipts_connection_id_seq", "connection_id", "seq", unique=True),
    )

    id: uuid.UUID = id_field()
    connection_id: uuid.UUID = Field(foreign_key="connections.id")
    environment_id: uuid.UUID = Field(foreign_key="environments.id", index=True)
    # The receipt's place in its connection's chain: 1, 2, ...
    seq: int
    act: str = Field(max_length=20)
    collection_method: str = Field(max_length=20)
    issued_at: datetime = timestamp_field()
    previous_receipt_id: uuid.UUID | None = None
    # The language of its scope wording, and the wording's content address.
    lang: str = Field(max_length=8)
    wording_sha256: str = Field(max_length=64, foreign_key="scope_wordings.sha256")
    kid: str = Field(max_length=64)
    jws: str = Field(sa_type=Text)
    partner_jws: str = Field(sa_type=Text)
