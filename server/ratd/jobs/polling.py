"""Polling a provider's job until it is done, shared by the provider batch runners."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from ratd import errors
from ratd.providers.http import parse_body
from ratd.providers.http_provider import HttpProvider

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


async def json_lines(provider: HttpProvider, path: str) -> list[dict[str, Any]]:
    """A provider's JSON-lines result (``GET path``): its objects, in order; an error
    status as the provider's error, a line that is not JSON as a protocol error."""
    async with provider.http.request("GET", path) as response:
        raw = await provider.http.read(response)
        if response.status != 200:
            raise provider.dialect.error_from_body(
                response.status, parse_body(raw), "", response.headers
            )
    lines = []
    for text in raw.splitlines():
        if text.strip():
            try:
                line = orjson.loads(text)
            except orjson.JSONDecodeError:
                raise provider.protocol_error("a result line that is not JSON") from None
            if isinstance(line, dict):
                lines.append(line)
    return lines
