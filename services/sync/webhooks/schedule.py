"""When a failed delivery is tried again: exponential backoff with jitter over ~24 h."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

# Seconds after attempt n (1-based) fails before attempt n + 1; about 23.7 h in all.
RETRY_DELAYS: list[float] = [5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 28800]
JITTER = 0.2  # up to +/- 20 %
MAX_RETRY_AFTER_S = 24 * 3600
# An attempt that has not reported back after this long is presumed dead (its worker
# died): the sweeper starts the next one.
ATTEMPT_LEASE_S = 20.0


def max_attempts() -> int:
    return len(RETRY_DELAYS) + 1


def next_attempt_at(now: datetime, attempt: int, retry_after: float | None = None) -> datetime:
    """When to try again after attempt `attempt` failed; `Retry-After` wins if later."""
    base = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS)) - 1]
    delay = base * (1 + random.uniform(-JITTER, JITTER))
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER_S))
    return now + timedelta(seconds=delay)
