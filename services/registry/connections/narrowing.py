"""Narrowing a connection (issue 19 item 4): the consenting user or the environment's
accountant drops scopes the app does not need. Calls are held to the consent as it is now
(shared/policy/resolve.py reads the connection's scopes on every call), so tokens already
issued lose the dropped scopes on their next call and keep the rest; the token families
live on unless `offline_access` is dropped, when they are revoked (no refresh any more).
Audited (`connection.scopes_narrowed`) and evented (`connection.updated`, scopes).
"""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from services.registry.connections.repository import ConnectionRepository
from shared import receipts
from shared.audit import Actor, append_async
from shared.db.types import utcnow
from shared.errors import Conflict, Invalid
from shared.models import Connection, ConnectionStatus
from shared.outbox import connection_event, emit
from shared.receipts import Act
from shared.status import Subject
from shared.unit_of_work import unit_of_work

OFFLINE = "offline_access"


async def narrow(session: AsyncSession, connection: Connection, keep: list[str],
                 actor: Actor, by: str) -> list[str]:
    """Keep only `keep` (a non-empty subset of the connection's scopes, else 422) of a
    connection that is not revoked (409); returns the scopes dropped (none: nothing
    changes, nothing is audited). `by` (`user:<id>` or `accountant:<id>`) names its
    receipt's method."""
    if connection.status == ConnectionStatus.REVOKED:
        raise Conflict("the connection is revoked")
    wanted = list(dict.fromkeys(keep))
    unknown = [s for s in wanted if s not in connection.scopes]
    if not wanted or unknown:
        raise Invalid("keep a non-empty subset of the connection's scopes; not granted: "
                      + " ".join(unknown))
    dropped = [s for s in connection.scopes if s not in wanted]
    if not dropped:
        return []
    now = utcnow()
    connection.scopes = [s for s in connection.scopes if s in wanted]
    connection.scope_used_at = {s: at for s, at in (connection.scope_used_at or {}).items()
                                if s in wanted}
    connection.updated_at = now
    session.add(connection)
    families = []
    if OFFLINE in dropped:
        families = await ConnectionRepository(session).revoke_families([connection.id], now)
        for family_id in families:
            unit_of_work(session).publish_status(Subject.FAMILY, family_id, False)
    await append_async(session, connection.environment_id, "connection.scopes_narrowed", actor,
                       "connection", connection.id, app_id=str(connection.app_id),
                       debtor_id=str(connection.debtor_id), user_id=str(connection.user_id),
                       removed=dropped, scopes=connection.scopes, token_families=len(families))
    emit(session, **connection_event("connection.updated", connection,
                                     changed_fields=["scopes"]))
    await receipts.issue_async(session, connection, Act.NARROWED, by)
    return dropped
