"""Health measured while a hostile call runs: Health checks (grpc.health.v1) go out one
after another on their own channel for as long as the call is in flight, each with a
generous deadline used as a hang detector (never a speed assertion).

``watched(address, call)`` returns the call's outcome (its reply or its ``AioRpcError``)
and a ``HealthReport``: how many Health replies overlapped the call and the worst round
trip seen. One probe is always sent as the call starts, so a fast refusal still has a
Health reply that overlapped it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

# A Health reply slower than this means the daemon stopped answering.
HANG_SECONDS = 5.0
# Pause between two probes, so that probing does not load a 2-core machine.
PROBE_GAP = 0.02


@dataclass
class HealthReport:
    overlapping: int = 0
    worst: float = 0.0
    probes: int = 0
    failures: list[str] = field(default_factory=list)

    def check(self) -> None:
        assert not self.failures, f"Health failed while the call ran: {self.failures}"
        assert self.overlapping >= 1, "no Health reply completed while the call was in flight"
        assert self.worst < HANG_SECONDS


class _Probe:
    def __init__(self, stub: health_pb2_grpc.HealthStub, report: HealthReport) -> None:
        self.stub = stub
        self.report = report
        self.start = 0.0
        self.end: float | None = None

    async def once(self) -> None:
        loop = asyncio.get_running_loop()
        sent = loop.time()
        try:
            reply = await self.stub.Check(health_pb2.HealthCheckRequest(), timeout=HANG_SECONDS)
        except grpc.aio.AioRpcError as err:
            self.report.failures.append(f"{err.code().name}: {err.details()}")
            return
        got = loop.time()
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            self.report.failures.append(f"status {reply.status}")
        self.report.probes += 1
        self.report.worst = max(self.report.worst, got - sent)
        if got >= self.start and (self.end is None or sent <= self.end):
            self.report.overlapping += 1

    async def loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PROBE_GAP)


async def watched(
    channel: grpc.aio.Channel, call: Callable[[], Awaitable[Any]]
) -> tuple[Any, HealthReport]:
    """Run ``call()`` while probing Health on ``channel``; the call's reply or error."""
    report = HealthReport()
    probe = _Probe(health_pb2_grpc.HealthStub(channel), report)
    await probe.once()  # the channel is connected before the call starts
    report.overlapping = 0
    stop = asyncio.Event()
    probe.start = asyncio.get_running_loop().time()
    first = asyncio.ensure_future(probe.once())
    prober = asyncio.ensure_future(probe.loop(stop))
    try:
        outcome: Any = await call()
    except grpc.aio.AioRpcError as err:
        outcome = err
    finally:
        probe.end = asyncio.get_running_loop().time()
        stop.set()
        await first
        await prober
    return outcome, report
