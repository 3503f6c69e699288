"""The auth service's clean-up job: only what expired longer ago than the grace period goes."""

from datetime import timedelta

from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, select

from services.auth.jobs import purge_expired
from shared.db.types import utcnow
from shared.jobs import PURGE_GRACE_SECONDS
from shared.models import AuthorizationCode, RefreshToken, TokenFamily, UserTemplate
from shared.runtime import Runtime
from tests.fixtures.factories import (
    make_app,
    make_authorization_code,
    make_environment,
    make_refresh_token,
    make_token_family,
    make_user,
)


async def test_purge_removes_only_what_expired_past_the_grace_period(
    runtime: Runtime, committing_sessions: sessionmaker[Session]
) -> None:
    now = utcnow()
    long_ago = now - timedelta(seconds=PURGE_GRACE_SECONDS, hours=1)
    recently = now - timedelta(seconds=PURGE_GRACE_SECONDS - 3600)
    later = now + timedelta(days=1)
    with committing_sessions() as session, session.begin():
        environment = make_environment(session)
        user = make_user(session, environment, template=UserTemplate.MASTER_CLIENT)
        app = make_app(session)
        dead_family = make_token_family(session, app, user, expires_at=long_ago)
        # Expired long ago, but a code or token still refers to it: kept until they go.
        held_family = make_token_family(session, app, user, expires_at=long_ago)
        live_family = make_token_family(session, app, user, expires_at=later)
        gone = {
            make_authorization_code(session, dead_family, expires_at=long_ago).id,
            make_refresh_token(session, dead_family, expires_at=long_ago).id,
            dead_family.id,
        }
        kept = {
            make_authorization_code(session, held_family, expires_at=recently).id,
            make_refresh_token(session, held_family, expires_at=recently).id,
            held_family.id,
            make_authorization_code(session, live_family, expires_at=later).id,
            make_refresh_token(session, live_family, expires_at=later).id,
            live_family.id,
        }

    counts = await purge_expired({"runtime": runtime})

    assert counts == {"authorization_codes": 1, "refresh_tokens": 1, "token_families": 1}
    with committing_sessions() as session:
        remaining = {
            *session.exec(select(AuthorizationCode.id)),
            *session.exec(select(RefreshToken.id)),
            *session.exec(select(TokenFamily.id)),
        }
    assert remaining == kept
    assert not remaining & gone
    assert await purge_expired({"runtime": runtime}) == {
        "authorization_codes": 0, "refresh_tokens": 0, "token_families": 0
    }
