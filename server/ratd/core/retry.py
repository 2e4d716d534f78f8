"""Retries of one provider call, before the fallback chain moves on.

Only failures that another attempt can cure are retried: rate limits (not an exhausted
quota), 5xx and overload, connection errors and timeouts, cut or malformed responses.
The provider's own hint (Retry-After, X-Ratelimit-Reset, Gemini RetryInfo, HuggingFace
estimated_time) sets the wait when there is one; otherwise exponential backoff with
jitter. No wait goes past the caller's deadline, and a retry budget per provider (a
fraction of that provider's recent requests) keeps a provider that is down from drawing a
retry storm, without spending the retries the other providers may need.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ratd import errors
from ratd.config import RetryConfig
from ratd.core.calls import CallInfo
from ratd.metrics import RETRIES, child

T = TypeVar("T")


def retryable(err: errors.GatewayError) -> bool:
    if isinstance(err, errors.QuotaExceeded):
        return False
    if isinstance(err, errors.NoProvider | errors.ShuttingDown):
        return False
    if isinstance(err, errors.ModelNotAvailable):
        # A model that is loading says when to come back; one over a RAM budget does not.
        return err.retry_after is not None
    return isinstance(err, errors.RateLimited | errors.ProviderUnavailable)


class _Window:
    """Events of the last ``window`` seconds, counted in one-second buckets: constant
    space and no object per event (a deque of timestamps held ~15,000 floats at 1,500
    calls/s, all touched again as they expired)."""

    __slots__ = ("counts", "seconds", "size")

    def __init__(self, window: float) -> None:
        self.size = max(1, math.ceil(window))
        self.counts = [0] * self.size
        self.seconds = [-1] * self.size  # the second each bucket counts

    def add(self, now: float) -> None:
        second = int(now)
        i = second % self.size
        if self.seconds[i] != second:
            self.seconds[i], self.counts[i] = second, 0
        self.counts[i] += 1

    def total(self, now: float) -> int:
        second = int(now)
        return sum(
            count
            for count, at in zip(self.counts, self.seconds, strict=True)
            if second - at < self.size
        )


class RetryBudget:
    """Retries may be at most ``ratio`` of the requests seen in the last ``window``
    seconds (to the second), plus ``minimum``."""

    def __init__(self, ratio: float, window: float, minimum: int) -> None:
        self.ratio, self.window, self.minimum = ratio, window, minimum
        self._requests = _Window(window)
        self._retries = _Window(window)

    def request(self) -> None:
        self._requests.add(time.monotonic())

    def try_spend(self) -> bool:
        now = time.monotonic()
        if self._retries.total(now) >= self.minimum + self.ratio * self._requests.total(now):
            return False
        self._retries.add(now)
        return True


class Retrier:
    def __init__(self, config: RetryConfig, rng: random.Random | None = None) -> None:
        self.config = config
        self.rng = rng or random.Random()
        # One budget per provider, so that one provider that is down cannot spend the
        # retries of the others. Keyed by the configured provider names: bounded.
        self._budgets: dict[str, RetryBudget] = {}

    def budget(self, provider: str) -> RetryBudget:
        """``provider``'s retry budget (made on its first call)."""
        budget = self._budgets.get(provider)
        if budget is None:
            config = self.config
            budget = self._budgets[provider] = RetryBudget(
                config.budget_ratio, config.budget_window_secs, config.budget_min_retries
            )
        return budget

    def backoff(self, attempt: int) -> float:
        """Seconds before retry number ``attempt`` (1 for the first retry), jittered."""
        base = self.config.initial_delay_ms * 2 ** (attempt - 1)
        capped = min(base, self.config.max_delay_ms) / 1000
        return capped * (1 - self.config.jitter * self.rng.random())

    def wait_before(
        self, attempt: int, err: errors.GatewayError, deadline: float | None = None
    ) -> float | None:
        """How long to wait before retrying after ``err``; None: do not retry (also when
        the wait would end past ``deadline``, on the event loop's clock)."""
        if attempt >= self.config.max_attempts or not retryable(err):
            return None
        if err.retry_after is not None:
            if err.retry_after > self.config.max_retry_after_secs:
                return None
            wait = err.retry_after
        else:
            wait = self.backoff(attempt)
        if deadline is not None and asyncio.get_running_loop().time() + wait >= deadline:
            return None
        return wait

    async def run(
        self, call: Callable[[], Awaitable[T]], provider: str, info: CallInfo | None = None
    ) -> T:
        """``call()``, again while its failures are worth another attempt, within the
        deadline of ``info`` (the call being served) and ``provider``'s budget."""
        budget = self.budget(provider)
        budget.request()
        attempt = 1
        while True:
            try:
                return await call()
            except errors.GatewayError as err:
                deadline = info.deadline if info is not None else None
                wait = self.wait_before(attempt, err, deadline)
                if wait is None or not budget.try_spend():
                    raise
            child(RETRIES, provider).inc()
            if info is not None:
                info.retries += 1
            await asyncio.sleep(wait)
            attempt += 1
