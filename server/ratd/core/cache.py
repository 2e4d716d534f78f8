"""The response cache of deterministic calls: an in-memory LRU with a TTL, bounded in
entries and bytes. Keys hold the operation, the model and every input and parameter
that changes the answer; batch calls look up each item on its own, so a text embedded
once is a hit in any later batch."""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from typing import TypeVar

from google.protobuf.message import Message

from ratd.config import CacheConfig
from ratd.metrics import CACHE_HITS, CACHE_MISSES, child

M = TypeVar("M", bound=Message)


def cache_key(operation: str, model: str, *parts: str | bytes) -> bytes:
    digest = hashlib.blake2b(digest_size=20)
    for part in (operation, model, *parts):
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.digest()


class ResponseCache:
    def __init__(self, config: CacheConfig) -> None:
        self.config = config
        self.max_bytes = int(config.max_mb * 1024 * 1024)
        self._entries: OrderedDict[bytes, tuple[float, Message, int]] = OrderedDict()
        self._bytes = 0

    @property
    def enabled(self) -> bool:
        return self.config.enabled and self.config.max_entries > 0

    def get(self, operation: str, key: bytes, cls: type[M]) -> M | None:
        if not self.enabled:
            return None
        found = self._entries.get(key)
        if found is None or found[0] < time.monotonic():
            if found is not None:
                self._drop(key)
            child(CACHE_MISSES, operation).inc()
            return None
        self._entries.move_to_end(key)
        child(CACHE_HITS, operation).inc()
        copy = cls()
        copy.MergeFrom(found[1])  # type: ignore[arg-type]
        return copy

    def put(self, key: bytes, value: Message) -> None:
        if not self.enabled:
            return
        size = value.ByteSize() + len(key)
        if size > self.max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        stored = type(value)()
        stored.CopyFrom(value)
        self._entries[key] = (time.monotonic() + self.config.ttl_secs, stored, size)
        self._bytes += size
        while len(self._entries) > self.config.max_entries or self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: bytes) -> None:
        _, _, size = self._entries.pop(key)
        self._bytes -= size

    def __len__(self) -> int:
        return len(self._entries)
