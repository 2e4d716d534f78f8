"""Operations: the metrics endpoint after real traffic, the request log line, the
response cache, and OpenTelemetry spans exported to a fake OTLP collector."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
import grpc
import pytest

from ratatoskr import ModelNotFound, ServiceClient, chat_pb2
from ratatoskr.v1 import ratatoskr_pb2_grpc
from ratd.server import Daemon
from tests.fakes.openai_upstream import TEXT, FakeOpenAIUpstream
from tests.support.daemon import make_config, running_daemon

KEYS = {"OPENAI_API_KEY": "sk-ops-openai-0001", "OPENROUTER_API_KEY": "sk-or-ops-0001"}


def providers(upstream: FakeOpenAIUpstream, extra: str = "") -> str:
    return f"""
[providers.openai]
base_url = "{upstream.base_url_openai}"
[providers.openrouter]
base_url = "{upstream.base_url_openrouter}"
{extra}"""


@pytest.fixture
async def ops(upstream: FakeOpenAIUpstream) -> AsyncIterator[tuple[Daemon, ServiceClient]]:
    async with running_daemon(make_config(providers(upstream), env=KEYS)) as daemon:
        async with await ServiceClient.connect(daemon.address, timeout=30) as client:
            yield daemon, client


async def scrape(daemon: Daemon, path: str = "/metrics") -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{daemon.metrics.bound}{path}") as response,
    ):
        return response.status, await response.text()


async def test_metrics_after_traffic(
    ops: tuple[Daemon, ServiceClient], upstream: FakeOpenAIUpstream
) -> None:
    daemon, client = ops
    await client.chat("hi", model="gpt-4o-mini")
    async for _ in client.chat_stream("hi", model="openai:gpt-4o-mini"):
        pass
    upstream.openai.scenario = "unknown-model"
    with pytest.raises(ModelNotFound):
        await client.chat("hi", model="openai:gpt-4o-mini")
    status, text = await scrape(daemon)
    assert status == 200
    for line in (
        'ratatoskr_requests_total{operation="Chat",provider="openai",status="OK"}',
        'ratatoskr_requests_total{operation="Chat",provider="none",status="NOT_FOUND"}',
        'ratatoskr_requests_total{operation="ChatStream",provider="openai",status="OK"}',
        'ratatoskr_tokens_total{direction="prompt",provider="openai"}',
        'ratatoskr_spend_usd_total{model="gpt-4o-mini",provider="openai"}',
    ):
        assert line in text, line
    for name in (
        "ratatoskr_request_duration_seconds_bucket",
        "ratatoskr_gateway_overhead_seconds_bucket",
        "ratatoskr_time_to_first_token_seconds_bucket",
        "ratatoskr_in_flight_requests",
        "ratatoskr_retries_total",
        "ratatoskr_fallbacks_total",
        "ratatoskr_cache_hits_total",
        "ratatoskr_loaded_models",
        "ratatoskr_batch_size",
    ):
        assert name in text, name
    assert 'model="scenario' not in text, "model labels stay within the registry's names"
    status, body = await scrape(daemon, "/healthz")
    assert (status, body) == (200, "ok\n")


async def test_one_structured_line_per_request(
    ops: tuple[Daemon, ServiceClient], caplog: pytest.LogCaptureFixture
) -> None:
    _, client = ops
    caplog.set_level(logging.INFO, logger="ratd.requests")
    await client.chat("hi", model="gpt-4o-mini")
    (record,) = [r for r in caplog.records if r.name == "ratd.requests"]
    fields = record.fields  # type: ignore[attr-defined]
    assert (
        fields["method"] == "Chat" and fields["provider"] == "openai" and fields["status"] == "OK"
    )
    assert fields["model"] == "gpt-4o-mini" and fields["tried"] == "openai"
    assert fields["tokens_in"] > 0 and fields["ms"] >= fields["upstream_ms"] > 0
    assert fields["request_id"] in record.getMessage()


async def test_the_cache_serves_repeated_deterministic_calls(upstream: FakeOpenAIUpstream) -> None:
    extra = "[cache]\nchat = true\n"
    async with running_daemon(make_config(providers(upstream, extra), env=KEYS)) as daemon:
        async with await ServiceClient.connect(daemon.address) as client:
            first = await client.embed_batch(["alpha", "beta"], "openai:text-embedding-3-small")
            asked = len(upstream.requests_to("openai", "/embeddings"))
            again = await client.embed_batch(
                ["beta", "gamma", "alpha"], "openai:text-embedding-3-small"
            )
            assert len(upstream.requests_to("openai", "/embeddings")) == asked + 1
            assert upstream.last("openai", "/embeddings").json["input"] == ["gamma"], (
                "only the miss is asked"
            )
            assert list(again[0].values) == list(first[1].values)
            assert list(again[2].values) == list(first[0].values)
            single = await client.embed("alpha", "openai:text-embedding-3-small")
            assert list(single.values) == list(first[0].values)
            assert len(upstream.requests_to("openai", "/embeddings")) == asked + 1

            # Chat: only with temperature 0, only when enabled.
            await client.chat("hi", model="openai:gpt-4o-mini", temperature=0.0)
            chats = len(upstream.requests_to("openai"))
            cached = await client.chat("hi", model="openai:gpt-4o-mini", temperature=0.0)
            assert cached.content == TEXT and len(upstream.requests_to("openai")) == chats
            await client.chat("hi", model="openai:gpt-4o-mini", temperature=0.7)
            assert len(upstream.requests_to("openai")) == chats + 1
            _, text = await scrape(daemon)
            assert 'ratatoskr_cache_hits_total{operation="embed"}' in text
            assert 'ratatoskr_cache_hits_total{operation="chat"}' in text


async def test_chat_is_not_cached_unless_enabled(
    ops: tuple[Daemon, ServiceClient], upstream: FakeOpenAIUpstream
) -> None:
    _, client = ops
    for _ in range(2):
        await client.chat("hi", model="openai:gpt-4o-mini", temperature=0.0)
    assert len(upstream.requests_to("openai")) == 2


# -- tracing --------------------------------------------------------------------------------------


async def test_spans_continue_the_callers_trace(upstream: FakeOpenAIUpstream) -> None:
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    received: list[trace_service_pb2.ExportTraceServiceRequest] = []

    class Collector(trace_service_pb2_grpc.TraceServiceServicer):
        async def Export(self, request, context):  # type: ignore[no-untyped-def]
            received.append(request)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Collector(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    try:
        extra = f'[tracing]\notlp_endpoint = "http://127.0.0.1:{port}"\n'
        async with running_daemon(make_config(providers(upstream, extra), env=KEYS)) as daemon:
            async with grpc.aio.insecure_channel(daemon.address) as channel:
                stub = ratatoskr_pb2_grpc.RatatoskrStub(channel)
                request = chat_pb2.ChatRequest(
                    messages=[chat_pb2.Message(role=chat_pb2.ROLE_USER, content="hi")],
                    options=chat_pb2.ChatOptions(model="gpt-4o-mini", temperature=0.2),
                )
                traceparent = f"00-{trace_id}-00f067aa0ba902b7-01"
                await stub.Chat(request, metadata=[("traceparent", traceparent)])
        # ratd flushed its exporter on stop.
        for _ in range(100):
            if received:
                break
            await asyncio.sleep(0.05)
    finally:
        await server.stop(None)
    spans = [
        s for r in received for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans
    ]
    by_name = {s.name: s for s in spans}
    rpc, call = by_name["ratatoskr.v1.Ratatoskr/Chat"], by_name["chat gpt-4o-mini"]
    assert rpc.trace_id.hex() == trace_id == call.trace_id.hex(), "the caller's trace continues"
    assert call.parent_span_id == rpc.span_id
    attributes = {a.key: a.value for a in call.attributes}
    assert attributes["gen_ai.operation.name"].string_value == "chat"
    assert attributes["gen_ai.provider.name"].string_value == "openai"
    assert attributes["gen_ai.request.model"].string_value == "gpt-4o-mini"
    assert attributes["gen_ai.request.temperature"].double_value == pytest.approx(0.2)
    assert attributes["gen_ai.usage.input_tokens"].int_value > 0
    resource = {
        a.key: a.value.string_value for a in received[0].resource_spans[0].resource.attributes
    }
    assert resource["service.name"] == "ratd"


async def test_a_streams_provider_span_covers_the_stream(upstream: FakeOpenAIUpstream) -> None:
    """The provider span of a stream stays open until its end: it carries the usage that
    only the last events report, under the RPC's span."""
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    received: list[trace_service_pb2.ExportTraceServiceRequest] = []

    class Collector(trace_service_pb2_grpc.TraceServiceServicer):
        async def Export(self, request, context):  # type: ignore[no-untyped-def]
            received.append(request)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Collector(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        extra = f'[tracing]\notlp_endpoint = "http://127.0.0.1:{port}"\n'
        async with running_daemon(make_config(providers(upstream, extra), env=KEYS)) as daemon:
            async with grpc.aio.insecure_channel(daemon.address) as channel:
                stub = ratatoskr_pb2_grpc.RatatoskrStub(channel)
                request = chat_pb2.ChatStreamRequest(
                    messages=[chat_pb2.Message(role=chat_pb2.ROLE_USER, content="hi")],
                    options=chat_pb2.ChatOptions(model="gpt-4o-mini"),
                )
                events = [event async for event in stub.ChatStream(request)]
        for _ in range(100):
            if received:
                break
            await asyncio.sleep(0.05)
    finally:
        await server.stop(None)
    assert any(event.WhichOneof("event") == "usage" for event in events)
    spans = [
        s for r in received for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans
    ]
    by_name = {s.name: s for s in spans}
    rpc, call = by_name["ratatoskr.v1.Ratatoskr/ChatStream"], by_name["chat gpt-4o-mini"]
    assert call.parent_span_id == rpc.span_id and call.trace_id == rpc.trace_id
    attributes = {a.key: a.value for a in call.attributes}
    assert attributes["gen_ai.usage.output_tokens"].int_value > 0
    assert call.end_time_unix_nano <= rpc.end_time_unix_nano
