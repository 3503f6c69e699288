"""The auth service's job in the worker (worker/main.py schedules it): purging expired
authorization codes, refresh tokens and token families."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog
from sqlmodel import col, delete, select

from shared.db.types import utcnow
from shared.jobs import PURGE_GRACE_SECONDS
from shared.models import AuthorizationCode, RefreshToken, TokenFamily

log = structlog.get_logger("koppel.worker")


async def purge_expired(ctx: dict[str, Any]) -> dict[str, int]:
    """Delete what expired longer ago than the grace period; returns the counts."""
    cutoff = utcnow() - timedelta(seconds=PURGE_GRACE_SECONDS)
    async with ctx["runtime"].async_session() as session, session.begin():
        codes = await session.exec(
            delete(AuthorizationCode).where(col(AuthorizationCode.expires_at) < cutoff)
        )
        tokens = await session.exec(
            delete(RefreshToken).where(col(RefreshToken.expires_at) < cutoff)
        )
        live = select(RefreshToken.family_id).union(select(AuthorizationCode.family_id))
        families = await session.exec(
            delete(TokenFamily).where(
                col(TokenFamily.expires_at) < cutoff, col(TokenFamily.id).not_in(live)
            )
        )
    counts = {
        "authorization_codes": codes.rowcount,
        "refresh_tokens": tokens.rowcount,
        "token_families": families.rowcount,
    }
    log.info("purged expired tokens", **counts)
    return counts
