"""Polling a provider's job until it is done, shared by the provider batch runners."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from ratd import errors

# Polls in a row that may fail for a passing reason before the job is given up.
POLL_FAILURES = 3


async def poll_until_done(
    fetch: Callable[[], Awaitable[dict[str, Any]]],
    is_done: Callable[[dict[str, Any]], bool],
    report: Callable[[dict[str, Any]], None],
    *,
    first: float,
    cap: float,
) -> dict[str, Any]:
    """``fetch()`` now, then after ``first`` seconds, doubling to ``cap``, until
    ``is_done``; each answer ``report``ed. A poll failing for a passing reason (5xx,
    429 but quota, the transport) is tried again at the next wait, up to
    ``POLL_FAILURES`` in a row."""
    wait, failures = first, 0
    while True:
        try:
            found = await fetch()
            failures = 0
            report(found)
            if is_done(found):
                return found
        except (errors.ProviderUnavailable, errors.RateLimited) as err:
            failures += 1
            if isinstance(err, errors.QuotaExceeded) or failures >= POLL_FAILURES:
                raise
        await asyncio.sleep(wait)
        wait = min(wait * 2, cap)
