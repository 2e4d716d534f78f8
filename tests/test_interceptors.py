"""Interceptors through a real ratd (grpc.aio, fake upstream on loopback): chain order,
rewrites seen upstream, refusals as clear statuses, stream events, buggy interceptors
failing closed, loading from module:attr and from an installed entry point, and the
built-in PII redactor end to end."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from ratatoskr.v1 import chat_pb2, inference_pb2, ratatoskr_pb2_grpc
from ratd.config import ConfigError
from ratd.server import Daemon
from tests.fakes.openai_upstream import TEXT, FakeOpenAIUpstream
from tests.support.compat import OPENAI_KEY, OPENAI_MODEL
from tests.support.daemon import make_config, running_daemon
from tests.support.sample_interceptors import Refuser, Tagger

pytestmark = pytest.mark.timeout(60)

SAMPLES = "tests.support.sample_interceptors"
USER = ("x-ratatoskr-user", "alice")


def config_with(fake: FakeOpenAIUpstream, interceptors: str) -> Any:
    text = f"""
[providers.openai]
base_url = "{fake.base_url_openai}"
[interceptors]
{interceptors}
"""
    return make_config(text, env={"OPENAI_API_KEY": OPENAI_KEY})


def chat(content: str) -> chat_pb2.ChatRequest:
    message = chat_pb2.Message(role=chat_pb2.ROLE_USER, content=content)
    return chat_pb2.ChatRequest(messages=[message], options={"model": OPENAI_MODEL})


def chat_stream(content: str) -> chat_pb2.ChatStreamRequest:
    message = chat_pb2.Message(role=chat_pb2.ROLE_USER, content=content)
    return chat_pb2.ChatStreamRequest(messages=[message], options={"model": OPENAI_MODEL})


def error_info(err: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    raise AssertionError("no ErrorInfo")


def sent_content(fake: FakeOpenAIUpstream) -> str:
    return str(fake.requests[-1].json["messages"][-1]["content"])


async def test_chain_order_and_rewrites_unary_and_stream(upstream: FakeOpenAIUpstream) -> None:
    """before runs in chain order (the upstream gets "[A][B]"), after and on_event in
    reverse ("<B><A>"); every content event of a stream passes on_event."""
    Tagger.seen.clear()
    config = config_with(
        upstream,
        f"""chain = ["{SAMPLES}:Tagger", "{SAMPLES}:TaggerB"]
[interceptors.settings."{SAMPLES}:Tagger"]
tag = "A"
[interceptors.settings."{SAMPLES}:TaggerB"]
tag = "B"
""",
    )
    async with running_daemon(config) as daemon:
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            stub = ratatoskr_pb2_grpc.RatatoskrStub(channel)
            answer = await stub.Chat(chat("hello"), metadata=(USER,))
            assert sent_content(upstream) == "hello[A][B]"
            assert answer.content == TEXT + "<B><A>"
            events = [e async for e in stub.ChatStream(chat_stream("again"), metadata=(USER,))]
            assert sent_content(upstream) == "again[A][B]"
    contents = [e.content for e in events if e.WhichOneof("event") == "content"]
    assert contents and all(c.endswith("<B><A>") for c in contents)
    assert "".join(c.removesuffix("<B><A>") for c in contents) == TEXT
    unary = [s for s in Tagger.seen if s[2] == "Chat"]
    assert unary == [
        ("A", "before", "Chat", "alice"),
        ("B", "before", "Chat", "alice"),
        ("B", "after", "Chat", "alice"),
        ("A", "after", "Chat", "alice"),
    ]
    streamed = [s for s in Tagger.seen if s[2] == "ChatStream" and s[1] == "on_event"]
    assert len(streamed) == 2 * len(events)  # each interceptor saw every event
    assert streamed[:2] == [
        ("B", "on_event", "ChatStream", "alice"),
        ("A", "on_event", "ChatStream", "alice"),
    ]


async def test_every_inference_rpc_passes_the_chain(upstream: FakeOpenAIUpstream) -> None:
    Tagger.seen.clear()
    config = config_with(
        upstream,
        f"""chain = ["{SAMPLES}:Tagger"]
[interceptors.settings."{SAMPLES}:Tagger"]
tag = "T"
""",
    )
    async with running_daemon(config) as daemon:
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            stub = ratatoskr_pb2_grpc.RatatoskrStub(channel)
            generated = await stub.Generate(
                chat_pb2.GenerateRequest(prompt="once", options={"model": OPENAI_MODEL})
            )
            assert generated.text.endswith("<T>")
            await stub.Embed(
                inference_pb2.EmbedRequest(model="text-embedding-3-small", text="leaf")
            )
            assert upstream.requests[-1].json["input"] in ("leaf[T]", ["leaf[T]"])
    rpcs = {s[2] for s in Tagger.seen if s[1] == "before"}
    assert rpcs == {"Generate", "Embed"}


async def test_refusal_is_a_clear_status_and_nothing_goes_upstream(
    upstream: FakeOpenAIUpstream,
) -> None:
    config = config_with(upstream, f'chain = ["{SAMPLES}:Refuser"]')
    async with running_daemon(config) as daemon:
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            stub = ratatoskr_pb2_grpc.RatatoskrStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Chat(chat("a forbidden word"))
            with pytest.raises(grpc.aio.AioRpcError) as refused_stream:
                async for _ in stub.ChatStream(chat_stream("forbidden again")):
                    pass
            allowed = await stub.Chat(chat("a fine word"))
    for err in (refused.value, refused_stream.value):
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert err.details() == "forbidden words are refused here"
        info = error_info(err)
        assert info.reason == "INTERCEPTOR_REFUSED"
        assert info.metadata["interceptor"] == "refuser"
    assert allowed.content == TEXT
    assert len(upstream.requests) == 1  # only the allowed call went out


async def test_buggy_interceptor_fails_closed_naming_it(
    upstream: FakeOpenAIUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    config = config_with(upstream, f'chain = ["{SAMPLES}:broken"]')
    caplog.set_level(logging.ERROR, logger="ratd.core.interceptors")
    async with running_daemon(config) as daemon:
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            stub = ratatoskr_pb2_grpc.RatatoskrStub(channel)
            failures = []
            for _ in range(2):
                with pytest.raises(grpc.aio.AioRpcError) as failed:
                    await stub.Chat(chat("my private words"))
                failures.append(failed.value)
    for err in failures:
        assert err.code() == grpc.StatusCode.INTERNAL
        assert f"interceptor {SAMPLES}:broken failed on Chat" in (err.details() or "")
        assert "RuntimeError" in (err.details() or "")
        assert "private" not in (err.details() or "")  # the exception's text stays in the log
        assert error_info(err).reason == "INTERCEPTOR_FAILED"
    assert not upstream.requests
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1  # logged with its traceback once, then in one line
    assert len([r for r in caplog.records if "broken failed" in r.getMessage()]) == 2


async def test_wrong_return_type_fails_closed(upstream: FakeOpenAIUpstream) -> None:
    config = config_with(upstream, f'chain = ["{SAMPLES}:WrongType"]')
    async with running_daemon(config) as daemon:
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            stub = ratatoskr_pb2_grpc.RatatoskrStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await stub.Chat(chat("hello"))
    assert failed.value.code() == grpc.StatusCode.INTERNAL
    assert "TypeError" in (failed.value.details() or "")


@pytest.mark.parametrize(
    ("interceptors", "message"),
    [
        ('chain = ["no_such_module_xyz:Thing"]', "cannot import 'no_such_module_xyz'"),
        (f'chain = ["{SAMPLES}:Nope"]', "has no attribute 'Nope'"),
        (f'chain = ["{SAMPLES}:SyncHook"]', "before must be an async function"),
        ('chain = ["not-installed"]', "no entry point 'not-installed'"),
        (f'chain = ["{SAMPLES}:Tagger"]', "cannot build it"),  # tag is required
        (f'[interceptors.settings."{SAMPLES}:Refuser"]\nx = 1', "not in interceptors.chain"),
    ],
)
def test_bad_chains_are_refused_at_start(
    upstream: FakeOpenAIUpstream, interceptors: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Daemon(config_with(upstream, interceptors))


def _install_plugin(root: Path) -> None:
    """A package with a dist-info declaring an entry point, as pip would install it."""
    package = root / "ratatoskr_test_plugin"
    package.mkdir()
    (package / "__init__.py").write_text(
        "from ratd.interceptors import Interceptor\n"
        "class Shout(Interceptor):\n"
        "    name = 'shout'\n"
        "    async def before(self, call, request):\n"
        "        copy = type(request)()\n"
        "        copy.CopyFrom(request)\n"
        "        copy.messages[-1].content = copy.messages[-1].content.upper()\n"
        "        return copy\n"
    )
    info = root / "ratatoskr_test_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: ratatoskr-test-plugin\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        "[ratatoskr.interceptors]\nshout = ratatoskr_test_plugin:Shout\n"
    )


@pytest.mark.parametrize("how", ["by_name", "load_entry_points"])
async def test_entry_point_interceptor(
    upstream: FakeOpenAIUpstream,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    _install_plugin(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "ratatoskr_test_plugin", raising=False)
    chain = 'chain = ["shout"]' if how == "by_name" else "load_entry_points = true"
    async with running_daemon(config_with(upstream, chain)) as daemon:
        assert daemon.gateway.interceptors.names == ["shout"]
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            stub = ratatoskr_pb2_grpc.RatatoskrStub(channel)
            await stub.Chat(chat("quiet please"))
    assert sent_content(upstream) == "QUIET PLEASE"


async def test_pii_redactor_end_to_end(upstream: FakeOpenAIUpstream) -> None:
    """The built-in redactor: the upstream never sees the address or the number."""
    config = config_with(upstream, 'chain = ["ratd.interceptors:PiiRedactor"]')
    prompt = "Mail ada@example.org or call +44 20 7946 0958 about release 2024-05-01."
    async with running_daemon(config) as daemon:
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            stub = ratatoskr_pb2_grpc.RatatoskrStub(channel)
            request = chat(prompt)
            request.messages.insert(
                0, chat_pb2.Message(role=chat_pb2.ROLE_SYSTEM, content="Reply to bob@corp.example")
            )
            answer = await stub.Chat(request)
            assert answer.content == TEXT
            await stub.Embed(
                inference_pb2.EmbedRequest(model="text-embedding-3-small", text="x@y.com")
            )
            embedded = upstream.requests[-1].json["input"]
    chat_body = json.dumps(upstream.requests[0].json)
    assert "ada@example.org" not in chat_body and "7946" not in chat_body
    assert "bob@corp.example" not in chat_body
    messages = upstream.requests[0].json["messages"]
    assert messages[-1]["content"] == (
        "Mail [REDACTED:email] or call [REDACTED:phone] about release 2024-05-01."
    )
    assert "[REDACTED:email]" in messages[0]["content"]
    assert embedded in ("[REDACTED:email]", ["[REDACTED:email]"])


async def test_pii_redactor_custom_patterns(upstream: FakeOpenAIUpstream) -> None:
    config = config_with(
        upstream,
        """chain = ["ratd.interceptors:PiiRedactor"]
[interceptors.settings."ratd.interceptors:PiiRedactor"]
kinds = ["email"]
patterns = { account = "ACCT-[0-9]{6}" }
replacement = "<{kind}>"
""",
    )
    async with running_daemon(config) as daemon:
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            stub = ratatoskr_pb2_grpc.RatatoskrStub(channel)
            await stub.Chat(chat("ACCT-123456 of a@b.io, phone +44 20 7946 0958"))
    assert sent_content(upstream) == "<account> of <email>, phone +44 20 7946 0958"


def test_check_config_builds_the_chain(tmp_path: Path) -> None:
    """`ratd --check-config` (the systemd unit's ExecStartPre) catches a bad chain."""
    import subprocess

    config = tmp_path / "config.toml"
    config.write_text('[interceptors]\nchain = ["no_such_module_xyz:Thing"]\n')
    result = subprocess.run(
        [sys.executable, "-m", "ratd", "--check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "interceptors.chain[0] ('no_such_module_xyz:Thing'): cannot import" in result.stderr


async def test_the_http_door_passes_the_same_chain(upstream: FakeOpenAIUpstream) -> None:
    """The OpenAI HTTP door reaches the gateway through the same entry points: the
    redactor rewrites its prompts and a refusal answers with the HTTP status of the gRPC
    one and the reason in the body."""
    import aiohttp

    from tests.support.openai_door import base_url, door_daemon

    Refuser.seen.clear()

    extra = f"""[interceptors]
chain = ["ratd.interceptors:PiiRedactor", "{SAMPLES}:Refuser"]
"""
    async with door_daemon(upstream, extra) as daemon, aiohttp.ClientSession() as session:
        url = base_url(daemon) + "/chat/completions"
        body = {"model": OPENAI_MODEL, "messages": [{"role": "user", "content": "hi a@b.io"}]}
        async with session.post(url, json=body) as reply:
            assert reply.status == 200
        assert sent_content(upstream) == "hi [REDACTED:email]"
        body["messages"][0]["content"] = "something forbidden"
        async with session.post(url, json=body) as reply:
            assert reply.status == 400  # FAILED_PRECONDITION
            error = (await reply.json())["error"]
    assert error["reason"] == "INTERCEPTOR_REFUSED"
    assert error["message"] == "forbidden words are refused here"
    assert len(upstream.requests) == 1
    assert Refuser.seen == [("Chat", "http"), ("Chat", "http")]


async def test_on_event_may_refuse_mid_stream(upstream: FakeOpenAIUpstream) -> None:
    """A refusal from on_event ends a stream that has begun, with its status; call.state
    carries over from one event to the next."""
    config = config_with(upstream, f'chain = ["{SAMPLES}:CutAfterFirst"]')
    received = []
    async with running_daemon(config) as daemon:
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            stub = ratatoskr_pb2_grpc.RatatoskrStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as cut:
                async for event in stub.ChatStream(chat_stream("tell me")):
                    received.append(event)
    assert cut.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info(cut.value).metadata["interceptor"] == "cut-after-first"
    contents = [e for e in received if e.WhichOneof("event") == "content"]
    assert len(contents) == 1 and contents[0].content


def test_refuse_takes_only_refusal_statuses() -> None:
    from ratd.interceptors import Refuse

    assert Refuse("no", grpc.StatusCode.INVALID_ARGUMENT).code == "INVALID_ARGUMENT"
    assert Refuse("no").code == "PERMISSION_DENIED"
    for bad in ("OK", "INTERNAL", grpc.StatusCode.UNKNOWN, "DATA_LOSS", "NOPE", 7):
        with pytest.raises(ValueError, match="not a status a refusal may take"):
            Refuse("no", bad)
