"""Fuzzing every RPC with hypothesis: random and extreme field values, huge strings and
lists, invalid JSON in string fields, unknown enum values. Whatever comes in, ratd
answers with a deliberate status (never INTERNAL or UNKNOWN) and stays up."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor as pb_descriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ratatoskr.v1 import admin_pb2, admin_pb2_grpc, ratatoskr_pb2, ratatoskr_pb2_grpc
from ratd.server import Daemon
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.support.daemon import make_config

FD = pb_descriptor.FieldDescriptor
BAD_STATUSES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}

# Strings that reach interesting paths: models of every route, JSON that is not an
# object or not JSON, presets, huge text.
SPECIAL_STRINGS = [
    "",
    " ",
    "gpt-4o-mini",
    "openai:gpt-4o-mini",
    "openrouter:yggdrasil/ash-3-mini",
    "claude-sonnet-4-5",
    "llama3.2:1b",
    "ratatoskr:budget/coding",
    "ratatoskr:",
    "ratatoskr:a/b/c",
    "openai:",
    ":",
    "{",
    "[]",
    "null",
    '{"type": "object"}',
    '{"a": 1',
    "\x00\udcff".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
    "x" * 300_000,
]
INT_RANGES = {
    FD.TYPE_INT32: (-(2**31), 2**31 - 1),
    FD.TYPE_INT64: (-(2**63), 2**63 - 1),
    FD.TYPE_UINT32: (0, 2**32 - 1),
    FD.TYPE_UINT64: (0, 2**64 - 1),
}


def scalar(field: FD) -> st.SearchStrategy[Any]:
    if field.type == FD.TYPE_STRING:
        return st.one_of(st.text(max_size=50), st.sampled_from(SPECIAL_STRINGS))
    if field.type == FD.TYPE_BYTES:
        return st.binary(max_size=64)
    if field.type == FD.TYPE_BOOL:
        return st.booleans()
    if field.type in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
        return st.floats(width=32 if field.type == FD.TYPE_FLOAT else 64)
    if field.type == FD.TYPE_ENUM:
        return st.integers(min_value=-1, max_value=40)  # unknown values included
    low, high = INT_RANGES[field.type]
    return st.one_of(st.integers(low, high), st.sampled_from([low, high, 0, 1]))


def message(descriptor: pb_descriptor.Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    cls = _classes[descriptor.full_name]
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.type == FD.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                value: st.SearchStrategy[Any] = st.dictionaries(
                    st.text(max_size=10), st.floats(width=32), max_size=3
                )
            elif depth >= 3:
                continue
            else:
                value = message(field.message_type, depth + 1)
        else:
            value = scalar(field)
        if field.is_repeated and not (
            field.type == FD.TYPE_MESSAGE and field.message_type.GetOptions().map_entry
        ):
            value = (
                st.one_of(
                    st.lists(value, max_size=4), st.lists(value, min_size=3000, max_size=3000)
                )
                if depth == 0
                else st.lists(value, max_size=3)
            )
        optional[field.name] = value

    def build(fields: dict[str, Any]) -> Message:
        made = cls()
        for name, value in fields.items():
            field = descriptor.fields_by_name[name]
            try:
                if field.type == FD.TYPE_MESSAGE and not field.is_repeated:
                    getattr(made, name).CopyFrom(value)
                elif (
                    field.is_repeated
                    and field.type == FD.TYPE_MESSAGE
                    and not field.message_type.GetOptions().map_entry
                ):
                    getattr(made, name).extend(value)
                elif field.is_repeated and field.type == FD.TYPE_MESSAGE:
                    getattr(made, name).update(value)
                elif field.is_repeated:
                    getattr(made, name).extend(value)
                else:
                    setattr(made, name, value)
            except (ValueError, TypeError):
                pass  # a value protobuf itself refuses (e.g. invalid UTF-8) never reaches ratd
        return made

    return st.fixed_dictionaries({}, optional=optional).map(build)


def _all_classes() -> dict[str, type[Message]]:
    from ratatoskr.v1 import (
        chat_pb2,
        inference_pb2,
        jobs_pb2,
        media_parts_pb2,
        media_pb2,
        models_pb2,
        realtime_pb2,
    )

    found: dict[str, type[Message]] = {}

    def walk(container: Any) -> None:
        for name in dir(container):
            item = getattr(container, name)
            if isinstance(item, type) and issubclass(item, Message):
                found[item.DESCRIPTOR.full_name] = item
                walk(item)

    modules = (
        chat_pb2,
        inference_pb2,
        jobs_pb2,
        media_pb2,
        media_parts_pb2,
        models_pb2,
        realtime_pb2,
    )
    for module in (*modules, ratatoskr_pb2, admin_pb2):
        walk(module)
    return found


_classes = _all_classes()


class Background:
    """ratd and the fake upstream on an event loop of their own thread, so that the sync
    hypothesis test can call into them."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 60) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def fuzz_target(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Background, grpc.aio.Channel]]:
    bg = Background()
    upstream = FakeOpenAIUpstream()
    bg.run(upstream.start())
    models = tmp_path_factory.mktemp("fuzz-models")
    config = make_config(
        f"""
[providers.openai]
base_url = "{upstream.base_url_openai}"
[providers.openrouter]
base_url = "{upstream.base_url_openrouter}"
[providers.ollama]
base_url = "http://127.0.0.1:9"
[providers.local]
models_dir = "{models}"
hub_downloads = false
""",
        env={"OPENAI_API_KEY": "sk-fuzz-000001", "OPENROUTER_API_KEY": "sk-or-fuzz-000001"},
    )

    async def start() -> tuple[Daemon, grpc.aio.Channel]:
        daemon = Daemon(config)
        await daemon.start()
        return daemon, grpc.aio.insecure_channel(
            daemon.address, options=[("grpc.max_send_message_length", 64 << 20)]
        )

    daemon, channel = bg.run(start())
    yield bg, channel

    async def stop() -> None:
        await channel.close()
        await daemon.stop()
        await upstream.close()

    bg.run(stop())
    bg.stop()


def _methods() -> list[tuple[str, pb_descriptor.MethodDescriptor]]:
    found = []
    for service, module in (("Ratatoskr", ratatoskr_pb2), ("AdminService", admin_pb2)):
        for method in module.DESCRIPTOR.services_by_name[service].methods:
            if method.name in ("ReloadConfig",):
                continue  # it reloads nothing here: this ratd has no config file to read
            found.append((service, method))
    return found


METHODS = _methods()


async def _bidi_status(call: Any, requests: list[Message]) -> grpc.StatusCode | None:
    """The status ratd ends a bidirectional call with, or None when the client never
    learned it: a write racing the server's answer (ratd refuses a bad first event at
    once) makes grpc's client end the call with its own INTERNAL "Internal error from
    Core", which is not ratd's (ratd's INTERNAL says "internal error in ratd")."""
    for request in requests:
        try:
            await call.write(request)
        except Exception:  # the call is over: read its status
            break
    else:
        with contextlib.suppress(Exception):
            await call.done_writing()
    with contextlib.suppress(Exception):
        async for _ in call:
            pass
    code = await call.code()
    if code == grpc.StatusCode.INTERNAL and "internal error in ratd" not in (
        await call.details() or ""
    ):
        return None
    return code  # type: ignore[no-any-return]


@pytest.mark.timeout(600)
@pytest.mark.parametrize(("service", "method"), METHODS, ids=[m.name for _, m in METHODS])
def test_no_request_gets_internal_or_unknown(
    fuzz_target: tuple[Background, grpc.aio.Channel],
    service: str,
    method: pb_descriptor.MethodDescriptor,
) -> None:
    bg, channel = fuzz_target
    stub = (
        ratatoskr_pb2_grpc.RatatoskrStub
        if service == "Ratatoskr"
        else admin_pb2_grpc.AdminServiceStub
    )(channel)
    call = getattr(stub, method.name)

    async def invoke(request: Message | list[Message]) -> grpc.StatusCode | None:
        try:
            if method.client_streaming and method.server_streaming:  # Realtime
                return await _bidi_status(call(timeout=20), request)
            if method.client_streaming:  # TranscribeStream: the messages as a client stream
                await call(iter(request), timeout=20)
            elif method.server_streaming:
                async for _ in call(request, timeout=20):
                    pass
            else:
                await call(request, timeout=20)
        except grpc.aio.AioRpcError as err:
            return err.code()
        return grpc.StatusCode.OK

    requests = message(method.input_type)
    if method.client_streaming:
        requests = st.lists(requests, min_size=1, max_size=3)  # type: ignore[assignment]

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(requests)
    def check(request: Message | list[Message]) -> None:
        code = bg.run(invoke(request))
        assert code not in BAD_STATUSES, (
            f"{method.name} answered {code.name} to {str(request)[:500]}"
        )

    check()

    async def health() -> bool:
        reply = await ratatoskr_pb2_grpc.RatatoskrStub(channel).Health(
            ratatoskr_pb2.HealthRequest()
        )
        return reply.healthy

    assert bg.run(health()), "the daemon stays up"
