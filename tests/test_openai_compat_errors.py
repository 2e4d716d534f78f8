"""Upstream failures of the OpenAI and OpenRouter providers, through a real in-process
ratd: each becomes the right typed client exception and gRPC status with details, streams
fail after the events they did deliver, the fallback chain moves on only when it should,
and the provider keys never reach the caller."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import aclosing

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from ratatoskr import (
    AuthenticationFailed,
    ContentFiltered,
    ContextLengthExceeded,
    DeadlineExceeded,
    InvalidInput,
    ModelNotAvailable,
    ModelNotFound,
    QuotaExceeded,
    RatatoskrError,
    RateLimited,
    ServiceClient,
)
from ratatoskr.v1 import ratatoskr_pb2_grpc
from tests.fakes.openai_upstream import REASONING_PIECES, TEXT, TEXT_PIECES, FakeOpenAIUpstream
from tests.support.compat import (
    MODELS,
    OPENAI_KEY,
    OPENAI_MODEL,
    OPENROUTER_KEY,
    collect,
    collect_until_error,
    compat_client,
    compat_config,
    joined,
    kinds,
    pinned,
)
from tests.support.daemon import running_daemon

FLAVOURS = ("openai", "openrouter")
KEYS = {"openai": OPENAI_KEY, "openrouter": OPENROUTER_KEY}


@pytest.fixture
async def ratd(upstream: FakeOpenAIUpstream) -> AsyncIterator[ServiceClient]:
    async with compat_client(upstream) as client:
        yield client
        assert (await client.health()).healthy, "ratd must stay up after upstream failures"


async def chat_error(client: ServiceClient, model: str, *, stream: bool) -> RatatoskrError:
    """The error a chat (or a stream that fails before its first event) raises."""
    if stream:
        events, err = await collect_until_error(client.chat_stream("hello", model=model))
        assert events == [], "the failure came before any event"
        return err
    with pytest.raises(RatatoskrError) as caught:
        await client.chat("hello", model=model)
    return caught.value


def assert_no_key(err: RatatoskrError) -> None:
    for key in (OPENAI_KEY, OPENROUTER_KEY):
        assert key not in err.message
        assert all(key not in value for value in err.metadata.values())


# scenario → (exception, status code, ErrorInfo reason), the same for both APIs.
ERRORS: dict[str, tuple[type[RatatoskrError], grpc.StatusCode, str]] = {
    "invalid-key": (AuthenticationFailed, grpc.StatusCode.UNAUTHENTICATED, "AUTHENTICATION_FAILED"),
    "unknown-model": (ModelNotFound, grpc.StatusCode.NOT_FOUND, "MODEL_NOT_FOUND"),
    "insufficient-quota": (QuotaExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED, "QUOTA_EXCEEDED"),
    "server-error": (ModelNotAvailable, grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE"),
    "bad-gateway": (ModelNotAvailable, grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE"),
    "overloaded": (ModelNotAvailable, grpc.StatusCode.UNAVAILABLE, "PROVIDER_OVERLOADED"),
    "bad-request": (InvalidInput, grpc.StatusCode.INVALID_ARGUMENT, "UPSTREAM_INVALID_REQUEST"),
    "context-length": (
        ContextLengthExceeded,
        grpc.StatusCode.OUT_OF_RANGE,
        "CONTEXT_LENGTH_EXCEEDED",
    ),
    "error-in-200": (ModelNotAvailable, grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE"),
    "content-filter": (ContentFiltered, grpc.StatusCode.PERMISSION_DENIED, "CONTENT_FILTERED"),
}


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("scenario", ERRORS)
async def test_upstream_errors_map_to_typed_exceptions(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream, scenario: str, flavour: str, stream: bool
) -> None:
    exception, code, reason = ERRORS[scenario]
    upstream.set_scenario(scenario)
    err = await chat_error(ratd, pinned(flavour, MODELS[flavour]), stream=stream)
    assert type(err) is exception, f"{type(err).__name__}: {err}"
    assert err.code == code
    assert err.reason == reason
    assert err.provider == flavour
    assert err.model == MODELS[flavour]
    assert err.metadata["tried"] == flavour
    assert err.message, "a human-readable message"
    assert_no_key(err)
    assert upstream.requests_to(flavour), "the upstream was asked"


async def test_openai_rate_limit_retry_after_seconds(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    upstream.set_scenario("rate-limit")
    err = await chat_error(ratd, pinned("openai", OPENAI_MODEL), stream=False)
    assert type(err) is RateLimited
    assert err.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.reason == "RATE_LIMITED"
    assert err.retry_after == 20
    assert err.message == "Rate limited, retry after 20s"
    assert "Please try again in 20s" in err.metadata["detail"], "the upstream text stays available"
    assert err.metadata["upstream_status"] == "429"
    assert err.metadata["upstream_code"] == "rate_limit_exceeded"


async def test_openai_rate_limit_delay_follows_the_header(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    upstream.set_scenario("rate-limit")
    upstream.openai.retry_after_secs = 7
    err = await chat_error(ratd, pinned("openai", OPENAI_MODEL), stream=True)
    assert isinstance(err, RateLimited)
    assert err.retry_after == 7
    assert err.message == "Rate limited, retry after 7s"


async def test_unreadable_retry_after_falls_back_to_the_limit_reset(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    """Retry-After that is neither seconds nor a date must not crash the call: the
    exhausted limit's x-ratelimit-reset-requests gives the delay instead."""
    upstream.set_scenario("rate-limit")
    upstream.openai.retry_after_header = "soon"
    upstream.openai.retry_after_secs = 12
    err = await chat_error(ratd, pinned("openai", OPENAI_MODEL), stream=False)
    assert type(err) is RateLimited
    assert err.retry_after == 12
    assert err.message == "Rate limited, retry after 12s"


async def test_openrouter_rate_limit_retry_after_from_reset_epoch_ms(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    """No Retry-After: the delay is X-RateLimit-Reset (epoch milliseconds) minus now."""
    upstream.set_scenario("rate-limit")
    upstream.openrouter.reset_in_secs = 3600
    for stream in (False, True):
        err = await chat_error(ratd, pinned("openrouter", MODELS["openrouter"]), stream=stream)
        assert type(err) is RateLimited
        assert err.retry_after is not None
        # The fake set the reset an hour ahead; only the time the call took is lost.
        assert 3300 < err.retry_after <= 3600
        assert re.fullmatch(r"Rate limited, retry after \d+(\.\d+)?s", err.message), err.message
        assert abs(float(err.message.split()[-1].rstrip("s")) - err.retry_after) < 0.001


async def test_openrouter_upstream_rate_limit_without_a_hint(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    upstream.set_scenario("rate-limit-upstream")
    err = await chat_error(ratd, pinned("openrouter", MODELS["openrouter"]), stream=False)
    assert type(err) is RateLimited
    assert err.retry_after is None
    assert "temporarily rate-limited upstream" in err.message, "metadata.raw says what happened"


async def test_quota_carries_no_retry_delay(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    upstream.set_scenario("insufficient-quota")
    err = await chat_error(ratd, pinned("openai", OPENAI_MODEL), stream=False)
    assert isinstance(err, QuotaExceeded)
    assert err.retry_after is None, "retrying will not help"
    assert "exceeded your current quota" in err.message


async def test_context_length_message_names_the_limit(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    upstream.set_scenario("context-length")
    err = await chat_error(ratd, pinned("openai", OPENAI_MODEL), stream=False)
    assert isinstance(err, ContextLengthExceeded)
    assert err.limit == 128000
    assert err.message == "context length exceeded: 128000 tokens"


async def test_openrouter_overloaded_with_retry_after(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    upstream.set_scenario("overloaded")
    upstream.openrouter.retry_after_secs = 45
    err = await chat_error(ratd, pinned("openrouter", MODELS["openrouter"]), stream=False)
    assert type(err) is ModelNotAvailable
    assert err.reason == "PROVIDER_OVERLOADED"
    assert err.retry_after == 45, "RetryInfo carries the hint"


async def test_openai_cloudflare_html_502(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    upstream.set_scenario("bad-gateway")
    err = await chat_error(ratd, pinned("openai", OPENAI_MODEL), stream=False)
    assert isinstance(err, ModelNotAvailable)
    assert "502 Bad Gateway" in err.message
    assert err.metadata["upstream_status"] == "502"


async def test_unknown_model_messages_keep_the_upstream_words(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    upstream.set_scenario("unknown-model")
    err = await chat_error(ratd, "openai:gpt-9-turbo", stream=False)
    assert "`gpt-9-turbo` does not exist" in err.message
    err = await chat_error(ratd, "openrouter:nobody/ash-9", stream=False)
    assert "nobody/ash-9 is not a valid model ID" in err.message
    assert err.metadata["upstream_status"] == "400"


# -- failures inside a 200 stream ------------------------------------------------------------------


async def test_openai_error_event_after_content(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    upstream.set_scenario("mid-stream-error")
    events, err = await collect_until_error(
        ratd.chat_stream("count", model=pinned("openai", OPENAI_MODEL))
    )
    assert kinds(events) == ["content"] * 4
    assert joined(events, "content") == "".join(TEXT_PIECES[:4])
    assert type(err) is ModelNotAvailable
    assert err.code == grpc.StatusCode.UNAVAILABLE
    assert err.reason == "PROVIDER_UNAVAILABLE"
    assert "had an error while processing your request" in err.message


async def test_openrouter_error_chunk_after_partial_output(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    """OpenRouter's top-level ``error`` (code 400) arrives in a chunk that also carries usage,
    after a finish_reason: the partial events come through, then the mapped error."""
    upstream.set_scenario("mid-stream-error")
    events, err = await collect_until_error(
        ratd.chat_stream("hello", model=pinned("openrouter", MODELS["openrouter"]))
    )
    assert kinds(events) == ["reasoning"] * 2 + ["content"] * 3
    assert joined(events, "reasoning") == "".join(REASONING_PIECES[:2])
    assert joined(events, "content") == "".join(TEXT_PIECES[:3])
    assert type(err) is InvalidInput
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.reason == "UPSTREAM_INVALID_REQUEST"
    assert "Token limit reached" in err.message
    assert err.metadata["upstream_status"] == "400"


async def test_openrouter_provider_error_chunk(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    """The documented form: ``error.code`` a string ("server_error") and the choice
    finished with "error" in the same chunk. Never a 'done' with the partial text."""
    upstream.set_scenario("mid-stream-provider-error")
    events, err = await collect_until_error(
        ratd.chat_stream("hello", model=pinned("openrouter", MODELS["openrouter"]))
    )
    assert kinds(events) == ["content"] * 3
    assert joined(events, "content") == "".join(TEXT_PIECES[:3])
    assert type(err) is ModelNotAvailable
    assert err.reason == "PROVIDER_UNAVAILABLE"
    assert "Provider disconnected unexpectedly" in err.message


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("scenario", ["truncated", "ended-early"])
async def test_stream_cut_short_is_unavailable(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream, flavour: str, scenario: str
) -> None:
    """A connection dropped mid-body, or a body that ends with neither finish_reason nor
    [DONE]: the content that came is delivered, then UNAVAILABLE, never a false 'done'."""
    upstream.set_scenario(scenario)
    events, err = await collect_until_error(
        ratd.chat_stream("hello", model=pinned(flavour, MODELS[flavour]))
    )
    assert kinds(events) == ["content"] * 5
    assert joined(events, "content") == "".join(TEXT_PIECES[:5])
    assert type(err) is ModelNotAvailable
    assert err.code == grpc.StatusCode.UNAVAILABLE
    assert err.reason == "UPSTREAM_PROTOCOL"


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_chunk_that_is_not_an_object_is_a_protocol_error(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream, flavour: str
) -> None:
    """Valid JSON but not a chunk (``data: "keep-alive"``): the upstream's fault, so
    UNAVAILABLE, not INTERNAL."""
    upstream.set_scenario("non-object-chunk")
    events, err = await collect_until_error(
        ratd.chat_stream("hello", model=pinned(flavour, MODELS[flavour]))
    )
    assert joined(events, "content") == TEXT_PIECES[0]
    assert err.code == grpc.StatusCode.UNAVAILABLE
    assert err.reason == "UPSTREAM_PROTOCOL"


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_malformed_chunk_is_a_protocol_error(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream, flavour: str
) -> None:
    upstream.set_scenario("malformed")
    events, err = await collect_until_error(
        ratd.chat_stream("hello", model=pinned(flavour, MODELS[flavour]))
    )
    assert joined(events, "content") == TEXT_PIECES[0]
    assert err.code == grpc.StatusCode.UNAVAILABLE
    assert err.reason == "UPSTREAM_PROTOCOL"
    assert "malformed JSON" in err.message


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_generate_stream_fails_after_partial_text(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream, flavour: str
) -> None:
    upstream.set_scenario("truncated")
    events, err = await collect_until_error(
        ratd.generate_stream("hello", model=pinned(flavour, MODELS[flavour]))
    )
    assert joined(events, "text") == "".join(TEXT_PIECES[:5])
    assert isinstance(err, ModelNotAvailable)


# -- fallback --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scenario", ["overloaded", "server-error", "bad-gateway", "rate-limit", "error-in-200"]
)
async def test_transient_openai_failure_falls_back_to_openrouter(
    upstream: FakeOpenAIUpstream, scenario: str
) -> None:
    upstream.set_scenario(scenario, "openai")
    async with compat_client(upstream, chain=["openai", "openrouter"]) as client:
        reply = await client.chat("hello", model=OPENAI_MODEL)
        events = await collect(client.chat_stream("hello", model=OPENAI_MODEL))
        generated = await client.generate("hello", model=OPENAI_MODEL)
    assert (reply.provider, reply.content) == ("openrouter", TEXT)
    assert (events[-1].provider, joined(events, "content")) == ("openrouter", TEXT)
    assert (generated.provider, generated.text) == ("openrouter", TEXT)
    assert upstream.requests_to("openai"), "openai was tried first"
    sent = upstream.requests_to("openrouter")
    assert [r.json["model"] for r in sent] == ["openai/gpt-4o-mini"] * 3, (
        "OpenRouter's name for the model"
    )
    assert all(r.headers["Authorization"] == f"Bearer {OPENROUTER_KEY}" for r in sent)


@pytest.mark.parametrize(
    ("scenario", "exception"),
    [
        ("bad-request", InvalidInput),
        ("context-length", ContextLengthExceeded),
        ("unknown-model", ModelNotFound),
    ],
)
async def test_request_faults_do_not_fall_back(
    upstream: FakeOpenAIUpstream, scenario: str, exception: type[RatatoskrError]
) -> None:
    upstream.set_scenario(scenario, "openai")
    async with compat_client(upstream, chain=["openai", "openrouter"]) as client:
        with pytest.raises(exception) as caught:
            await client.chat("hello", model=OPENAI_MODEL)
        _, streamed = await collect_until_error(client.chat_stream("hello", model=OPENAI_MODEL))
    assert type(streamed) is exception
    assert caught.value.provider == "openai"
    assert caught.value.metadata["tried"] == "openai"
    assert len(upstream.requests_to("openai")) == 2
    assert upstream.requests_to("openrouter") == [], (
        "another provider would refuse the same request"
    )


async def test_no_fallback_once_a_stream_has_started(upstream: FakeOpenAIUpstream) -> None:
    """Events already delivered cannot be taken back: a stream that fails midway ends in
    an error rather than a second answer from the next provider."""
    upstream.set_scenario("truncated", "openai")
    async with compat_client(upstream, chain=["openai", "openrouter"]) as client:
        events, err = await collect_until_error(client.chat_stream("hello", model=OPENAI_MODEL))
    assert joined(events, "content") == "".join(TEXT_PIECES[:5])
    assert isinstance(err, ModelNotAvailable)
    assert upstream.requests_to("openrouter") == []


async def test_every_provider_failing_reports_the_first_and_names_all(
    upstream: FakeOpenAIUpstream,
) -> None:
    upstream.set_scenario("overloaded", "openai")
    upstream.set_scenario("server-error", "openrouter")
    async with compat_client(upstream, chain=["openai", "openrouter"]) as client:
        with pytest.raises(ModelNotAvailable) as caught:
            await client.chat("hello", model=OPENAI_MODEL)
    err = caught.value
    assert err.reason == "PROVIDER_OVERLOADED"
    assert err.provider == "openai"
    assert err.metadata["tried"] == "openai,openrouter"
    assert "openrouter: Internal Server Error" in err.message
    assert upstream.requests_to("openai") and upstream.requests_to("openrouter")


# -- keys ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_a_wrong_key_is_refused_and_never_echoed(
    upstream: FakeOpenAIUpstream, flavour: str
) -> None:
    """The fake knows the right key; ratd sends another: a genuine 401, not a scripted one."""
    upstream.flavour(flavour).api_key = "sk-the-right-key-0000000000"
    async with compat_client(upstream) as client:
        err = await chat_error(client, pinned(flavour, MODELS[flavour]), stream=False)
    assert isinstance(err, AuthenticationFailed)
    assert err.code == grpc.StatusCode.UNAUTHENTICATED
    assert_no_key(err)
    assert upstream.last(flavour).headers["Authorization"] == f"Bearer {KEYS[flavour]}"


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_key_quoted_by_the_upstream_is_redacted(
    ratd: ServiceClient,
    upstream: FakeOpenAIUpstream,
    flavour: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An upstream that quotes the whole Authorization header back: the caller and the log
    see ``***`` where the key was."""
    upstream.set_scenario("echo-key")
    with caplog.at_level(logging.DEBUG):
        for stream in (False, True):
            err = await chat_error(ratd, pinned(flavour, MODELS[flavour]), stream=stream)
            assert isinstance(err, InvalidInput)
            assert_no_key(err)
            assert "Bearer ***" in err.message
    assert upstream.last(flavour).headers["Authorization"] == f"Bearer {KEYS[flavour]}"
    assert KEYS[flavour] not in caplog.text


async def test_successful_replies_carry_no_key(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream
) -> None:
    reply = await ratd.chat("hello", model=OPENAI_MODEL)
    assert reply.content == TEXT
    assert OPENAI_KEY not in str(reply) and OPENROUTER_KEY not in str(reply)


# -- cancellation and deadlines -------------------------------------------------------------------


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_cancelled_stream_closes_the_upstream_request(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream, flavour: str
) -> None:
    """A caller that stops reading frees the upstream at once: ratd drops its request."""
    upstream.set_scenario("hang")
    async with aclosing(
        ratd.chat_stream("hello", model=pinned(flavour, MODELS[flavour]))
    ) as stream:
        first = await anext(stream)
        assert first.content == TEXT_PIECES[0]
    await asyncio.wait_for(upstream.disconnected.wait(), 30)
    assert upstream.disconnected.is_set()


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
async def test_deadline_reaches_the_upstream_request(
    ratd: ServiceClient, upstream: FakeOpenAIUpstream, stream: bool
) -> None:
    upstream.set_scenario("hang")
    model = pinned("openai", OPENAI_MODEL)
    if stream:
        events, err = await collect_until_error(ratd.chat_stream("hello", model=model, timeout=1))
        assert joined(events, "content") == "".join(TEXT_PIECES[:2])
    else:
        with pytest.raises(RatatoskrError) as caught:
            await ratd.chat("hello", model=model, timeout=1)
        err = caught.value
    assert isinstance(err, DeadlineExceeded)
    assert err.code == grpc.StatusCode.DEADLINE_EXCEEDED
    await asyncio.wait_for(upstream.disconnected.wait(), 30)


# -- the status on the wire ------------------------------------------------------------------------


async def test_status_details_on_the_wire(upstream: FakeOpenAIUpstream) -> None:
    """What any gRPC client (not only ours) receives: the code, the upstream message form,
    ErrorInfo with a stable reason and the provider, RetryInfo with the delay."""
    upstream.set_scenario("rate-limit")
    async with running_daemon(compat_config(upstream)) as daemon:
        channel = grpc.aio.insecure_channel(daemon.address)
        try:
            stub = ratatoskr_pb2_grpc.RatatoskrStub(channel)
            request = ServiceClient.chat_request("hello", model=pinned("openai", OPENAI_MODEL))
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Chat(request, timeout=30)
        finally:
            await channel.close()
    err = caught.value
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.details() == "Rate limited, retry after 20s"
    raw = dict(err.trailing_metadata() or ())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(raw)
    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    infos = [d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    retries = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    assert len(infos) == len(retries) == 1
    info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    infos[0].Unpack(info)
    retries[0].Unpack(retry)
    assert (info.reason, info.domain) == ("RATE_LIMITED", "ratatoskr")
    assert info.metadata["provider"] == "openai"
    assert info.metadata["model"] == OPENAI_MODEL
    assert retry.retry_delay.ToTimedelta().total_seconds() == 20
