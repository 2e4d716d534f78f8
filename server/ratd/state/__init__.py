"""Shared state for governance: counters with windows (rate limits, budgets), settlements
applied once per request id, and usage buckets. One small interface (``StateBackend``),
two implementations: ``memory`` (one process) and ``redis`` (every replica sharing one
Redis enforces one set of limits).
"""

from __future__ import annotations

from ratd.config import Config
from ratd.secrets import REDIS
from ratd.state.base import Counter, Denial, Settlement, StateBackend
from ratd.state.memory import MemoryState

__all__ = ["Counter", "Denial", "MemoryState", "Settlement", "StateBackend", "build_state"]


def build_state(config: Config) -> StateBackend:
    """The backend ``[state]`` names (Redis is connected lazily: a replica that starts
    while Redis is down serves as ``on_unavailable`` says, and recovers by itself)."""
    state = config.state
    if state.backend == "redis":
        from ratd.state.redis_state import RedisState  # redis is imported only when used

        password = config.keys.get(REDIS)
        return RedisState(
            state.redis_url,
            password=password.reveal() if password is not None else None,
            timeout=state.timeout_ms / 1000,
        )
    return MemoryState()
