"""The webhook HTTP client of a worker process: one pooled aiohttp session for every
send, behind the SSRF guard at every send.

Each send is checked (`ssrf.check_url`: every address the host resolves to must be
allowed); a check's verdict and its DNS answer are reused for at most `RESOLVE_TTL_S`
seconds (like a caching resolver), a refusal never is. The checked addresses are pinned
for the session's resolver, so a connection goes only to them, and redirects are never
followed. Pooled keep-alive connections were opened to checked addresses only.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

import aiohttp

from shared import ssrf
from shared.db.types import utcnow

MAX_ERROR = 1000
MAX_BODY = 1024
# DNS answers are reused this long; the addresses are checked on every send.
RESOLVE_TTL_S = 10.0
MAX_CHECKED = 10_000


@dataclass
class Outcome:
    succeeded: bool
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None
    gone: bool = False
    duration_ms: int = 0


def retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - utcnow()).total_seconds())


def _outcome(status: int, headers) -> Outcome:
    outcome = Outcome(200 <= status < 300, status)
    if 300 <= status < 400:
        outcome.error = f"answered {status}: redirects are not followed"
    elif status == 410:
        outcome.gone, outcome.error = True, "answered 410 Gone"
    elif not outcome.succeeded:
        outcome.error = f"answered {status}"
        outcome.retry_after = retry_after(headers.get("Retry-After"))
    return outcome


@functools.lru_cache(maxsize=8)
def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    """One (immutable) ClientTimeout per value, not one per send."""
    return aiohttp.ClientTimeout(total=seconds)


class Sender:
    """Posts signed bodies for one worker process (open it once, close it at shutdown)."""

    def __init__(self, *, allow_loopback: bool, resolver: ssrf.Resolver | None = None,
                 limit: int = 1000, limit_per_host: int = 200) -> None:
        self.allow_loopback = allow_loopback
        self.resolve = ssrf.ResolveCache(resolver, ttl=RESOLVE_TTL_S)
        self._checked: dict[str, tuple[float, ssrf.Target]] = {}
        self.limit, self.limit_per_host = limit, limit_per_host
        self._session: aiohttp.ClientSession | None = None
        self._pins: ssrf.CheckedResolver | None = None

    def _open(self) -> tuple[aiohttp.ClientSession, ssrf.CheckedResolver]:
        if self._session is None or self._session.closed or self._pins is None:
            self._session, self._pins = ssrf.shared_session(
                limit=self.limit, limit_per_host=self.limit_per_host)
        return self._session, self._pins

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _check(self, url: str) -> ssrf.Target:
        """`ssrf.check_url`, its verdict reused until its DNS answer expires."""
        now = time.monotonic()
        hit = self._checked.get(url)
        if hit is not None and hit[0] > now:
            return hit[1]
        target = await ssrf.check_url(url, allow_loopback=self.allow_loopback,
                                      resolver=self.resolve)  # raises if refused
        if len(self._checked) >= MAX_CHECKED:
            self._checked.clear()
        self._checked[url] = (self.resolve.expires(target.host, now + RESOLVE_TTL_S), target)
        return target

    async def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float
                   ) -> Outcome:
        """POST `body`; never raises for anything the receiver, DNS or network does."""
        started = time.monotonic()
        try:
            target = await self._check(url)
            session, pins = self._open()
            pins.pin(target)
            async with session.post(target.url, data=body, headers=headers,
                                    allow_redirects=False,
                                    timeout=_timeout(timeout)) as response:
                await response.content.read(MAX_BODY)
                outcome = _outcome(response.status, response.headers)
        except ssrf.UnsafeURL as exc:
            outcome = Outcome(False, error=f"refused by the SSRF guard: {exc}")
        except TimeoutError:
            outcome = Outcome(False, error=f"timed out after {timeout:g} s")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            outcome = Outcome(False, error=f"connection failed: {type(exc).__name__}: {exc}")
        outcome.duration_ms = int((time.monotonic() - started) * 1000)
        if outcome.error:
            outcome.error = outcome.error[:MAX_ERROR]
        return outcome
