"""Who can read an employee: the covering connections as the accountant and the
employee see them."""

from __future__ import annotations

import uuid
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from services.registry.exposure.repository import ExposureRepository
from services.registry.exposure.schemas import (
    ConsentingUser,
    ExposedScope,
    Exposure,
    ExposureApp,
    ExposureStatus,
)
from shared.db.types import utcnow
from shared.errors import NotFound
from shared.models import ConnectionStatus, is_live
from shared.pagination import after_id, check_limit, id_cursor
from shared.scopes import SCOPES, Sensitivity

CURSOR_KIND = "exposure"


def _scope(name: str, lang: str) -> ExposedScope:
    known = SCOPES.get(name)
    if known is None:  # a scope since dropped from the catalogue
        return ExposedScope(scope=name, title=name, sensitivity=Sensitivity.NONE)
    shown = known.localized(lang)
    return ExposedScope(scope=name, title=shown["title"], sensitivity=known.sensitivity)


def _exposure(row: Any, now: Any, lang: str) -> Exposure:
    status = row.status
    if status == ConnectionStatus.ACTIVE and not is_live(status, row.expires_at, now):
        status = ConnectionStatus.EXPIRED.value  # the expiry job has not marked it yet
    return Exposure(
        id=row.id, status=status, app=ExposureApp(client_id=row.client_id, name=row.app_name),
        user=ConsentingUser(id=row.user_id, email=row.user_email, template=row.user_template),
        scopes=[_scope(name, lang) for name in row.scopes], since=row.created_at,
        last_used_at=row.last_used_at, expires_at=row.expires_at)


async def exposure_page(session: AsyncSession, digest_key: bytes, environment_id: uuid.UUID,
                        employee_id: uuid.UUID, status: ExposureStatus, cursor: str | None,
                        limit: int, lang: str) -> tuple[list[Exposure], str | None] | None:
    """One page of the connections of `status` that cover the employee, in id order,
    and the next page's cursor; None when the environment has no such employee."""
    check_limit(limit)
    after = after_id(digest_key, CURSOR_KIND, cursor)
    now = utcnow()
    rows = await ExposureRepository(session).covering(environment_id, employee_id, status,
                                                      now, after, limit + 1)
    if rows is None:
        return None
    items = [_exposure(row, now, lang) for row in rows[:limit]]
    more = len(rows) > limit
    return items, id_cursor(digest_key, CURSOR_KIND, items[-1].id) if more else None


async def employee_exposure(session: AsyncSession, digest_key: bytes,
                            environment_id: uuid.UUID, employee_id: uuid.UUID,
                            status: ExposureStatus, cursor: str | None, limit: int, lang: str
                            ) -> tuple[list[Exposure], str | None]:
    """An employee of the accountant's environment: 404 for any other id."""
    found = await exposure_page(session, digest_key, environment_id, employee_id, status,
                                cursor, limit, lang)
    if found is None:
        raise NotFound("no such employee")
    return found


async def own_exposure(session: AsyncSession, digest_key: bytes, environment_id: uuid.UUID,
                       employee_id: uuid.UUID | None, status: ExposureStatus,
                       cursor: str | None, limit: int, lang: str
                       ) -> tuple[list[Exposure], str | None]:
    """The calling user's own employee record (`User.employee_id`); a login linked to no
    record of its environment is the data subject of nothing: an empty list."""
    check_limit(limit)
    if employee_id is None:
        after_id(digest_key, CURSOR_KIND, cursor)  # a bad cursor is a 400 all the same
        return [], None
    found = await exposure_page(session, digest_key, environment_id, employee_id, status,
                                cursor, limit, lang)
    return found if found is not None else ([], None)
