"""The hostile-input suite (#13): every way found to hurt ratd with crafted input, each
answered with a clear status (never INTERNAL or UNKNOWN) while Health keeps answering.

Health is measured by tests/support/health_watch.py: Health checks go out one after
another on a channel of their own while each hostile call is in flight; at least one must
complete during the call and none may take longer than its hang-detector deadline. The
worst round trip of each case is printed (``pytest -s``) as ``health <case>: ...``.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ratatoskr.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    chat_pb2,
    inference_pb2,
    models_pb2,
    ratatoskr_pb2_grpc,
)
from ratd.config import ConfigError
from ratd.local.provider import LocalProvider
from ratd.server import Daemon
from tests.fakes.hub import FakeHub
from tests.fakes.hub_models import write_model
from tests.support.daemon import make_config, running_daemon
from tests.support.health_watch import HANG_SECONDS, HealthReport, watched
from tests.support.pki import Pki, make_pki

pytestmark = pytest.mark.timeout(120)

BAD = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
HEX40 = "89abcdef0123456789abcdef0123456789abcdef"


def report(case: str, health: HealthReport) -> None:
    health.check()
    print(
        f"health {case}: worst {health.worst * 1000:.1f} ms over {health.probes} probes "
        f"({health.overlapping} during the call)"
    )


def refused(outcome: Any, *codes: grpc.StatusCode) -> grpc.aio.AioRpcError:
    assert isinstance(outcome, grpc.aio.AioRpcError), f"expected a refusal, got {outcome!r}"[:300]
    assert outcome.code() not in BAD, outcome.details()
    assert outcome.code() in codes, (outcome.code(), outcome.details())
    return outcome


class Local:
    """A daemon with local inference (tokenizers_dir, a tiny NLI model, a fake Hub)."""

    def __init__(self, daemon: Daemon, hub: FakeHub, tokenizers: Path) -> None:
        self.daemon = daemon
        self.hub = hub
        self.tokenizers = tokenizers
        self.channel = grpc.aio.insecure_channel(daemon.address)
        self.stub = ratatoskr_pb2_grpc.RatatoskrStub(self.channel)
        self.admin = admin_pb2_grpc.AdminServiceStub(self.channel)

    async def watch(self, case: str, call: Callable[[], Awaitable[Any]]) -> Any:
        outcome, health = await watched(self.channel, call)
        report(case, health)
        return outcome


@pytest.fixture
async def local(tmp_path: Path, shared_dir: Path) -> AsyncIterator[Local]:
    tokenizers = tmp_path / "tokenizers"
    tokenizers.mkdir()
    shutil.copy(shared_dir / "assets" / "tokenizers" / "o200k_base.tokenizer.json", tokenizers)
    write_model(tmp_path / "tiny-nli", "nli", id2label={0: "contradiction", 1: "entailment"})
    write_model(tmp_path / "repo", "embedding", onnx_name="onnx/model.onnx", ballast_rows=20_000)
    hub = await FakeHub().start()
    hub.add("acme/tiny", tmp_path / "repo", commit=HEX40)
    write_model(tmp_path / "big", "embedding", onnx_name="onnx/model.onnx", ballast_rows=40_000)
    hub.add("acme/big", tmp_path / "big")
    config = make_config(
        f"""
[providers.local]
models_dir = "{tmp_path / "models"}"
hub_cache_dir = "{tmp_path / "hub-cache"}"
hub_endpoint = "{hub.endpoint}"
tokenizers_dir = "{tokenizers}"
max_classify_tokens = 4000
allowed_revisions = ["v1.0"]
max_download_mb = 2
[providers.local.models.tiny-nli]
kind = "nli"
path = "{tmp_path / "tiny-nli"}"
[providers.local.models.tiny]
kind = "embedding"
hub_repo = "acme/tiny"
[providers.local.models.big]
kind = "embedding"
hub_repo = "acme/big"
"""
    )
    try:
        async with running_daemon(config) as daemon:
            fixture = Local(daemon, hub, tokenizers)
            try:
                yield fixture
            finally:
                await fixture.channel.close()
    finally:
        await hub.stop()


# -- Tokenize and CountTokens on megabytes of text -------------------------------------------


async def test_tokenize_of_megabytes_is_refused_off_the_loop(local: Local) -> None:
    text = "hostile words, " * 220_000  # 3.3 MB, about 660k tokens
    outcome = await local.watch(
        "tokenize 3.3 MB",
        lambda: local.stub.Tokenize(inference_pb2.TokenizeRequest(text=text, model="gpt-4o")),
    )
    err = refused(outcome, grpc.StatusCode.INVALID_ARGUMENT)
    assert "100000 tokens" in (err.details() or "")
    counted = await local.watch(
        "count tokens 3.3 MB",
        lambda: local.stub.CountTokens(inference_pb2.CountTokensRequest(text=text, model="gpt-4o")),
    )
    assert counted.count > 100_000


async def test_first_count_tokens_finds_its_tokenizer_loaded(local: Local) -> None:
    """Loading a tokenizer.json holds the GIL (~1 s for o200k_base): ratd loads the ones on
    disk before it serves, so the first caller neither waits for it nor stalls Health."""
    provider = local.daemon.gateway.providers["local"]
    assert isinstance(provider, LocalProvider)
    assert provider.tokenizers.loaded() == {"o200k_base"}  # before any call
    counted = await local.watch(
        "first count tokens",
        lambda: local.stub.CountTokens(
            inference_pb2.CountTokensRequest(text="hello world", model="gpt-4o")
        ),
    )
    assert counted.count == 2 and counted.tokenizer == "o200k_base"


# -- zero-shot cost -----------------------------------------------------------------------------


async def test_zero_shot_labels_times_text_is_capped(local: Local) -> None:
    text = "cats love rain " * 20_000  # 300 kB: tokenised whole, 256 times, before the fix
    labels = [f"label{i}" for i in range(256)]
    outcome = await local.watch(
        "zero-shot 256 labels x 300 kB",
        lambda: local.stub.ClassifyZeroShot(
            inference_pb2.ClassifyZeroShotRequest(text=text, labels=labels, model="tiny-nli"),
            timeout=60,
        ),
    )
    err = refused(outcome, grpc.StatusCode.INVALID_ARGUMENT)
    assert "max_classify_tokens" in (err.details() or "")
    # A few labels on a long text: the text is cut to the model's window first.
    reply = await local.watch(
        "zero-shot 3 labels x 3 MB",
        lambda: local.stub.ClassifyZeroShot(
            inference_pb2.ClassifyZeroShotRequest(
                text=text * 10, labels=["sun", "rain", "snow"], model="tiny-nli"
            ),
            timeout=60,
        ),
    )
    assert set(reply.scores) == {"sun", "rain", "snow"}


# -- tokenizers_dir confinement -----------------------------------------------------------------


@pytest.mark.parametrize(
    "model", ["../outside", "../../etc/passwd", "/etc/passwd", "a/../../outside", "..", "x/.."]
)
async def test_model_paths_outside_tokenizers_dir_are_refused(local: Local, model: str) -> None:
    (local.tokenizers.parent / "outside.tokenizer.json").write_text("{}")
    outcome = await local.watch(
        f"tokenizer path {model}",
        lambda: local.stub.CountTokens(inference_pb2.CountTokensRequest(text="x", model=model)),
    )
    refused(outcome, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)


# -- Hub revisions and sizes ----------------------------------------------------------------------


async def download(local: Local, model: str, revision: str) -> Any:
    async def call() -> list[admin_pb2.DownloadModelResponse]:
        request = admin_pb2.DownloadModelRequest(model=model, revision=revision)
        return [event async for event in local.admin.DownloadModel(request, timeout=60)]

    return await local.watch(f"download {model}@{revision[:48]}", call)


@pytest.mark.parametrize(
    "revision", ["..%2F..", "../../api", "main/../x", "a b", "refs%2Fpr%2F1", "-rf", "x" * 300]
)
async def test_hostile_revisions_never_reach_the_hub(local: Local, revision: str) -> None:
    err = refused(await download(local, "tiny", revision), grpc.StatusCode.INVALID_ARGUMENT)
    assert "revision" in (err.details() or "")
    assert local.hub.requests == []


async def test_a_revision_outside_the_allow_list_is_refused(local: Local) -> None:
    err = refused(await download(local, "tiny", "v2.0"), grpc.StatusCode.PERMISSION_DENIED)
    assert "allowed_revisions" in (err.details() or "")
    assert local.hub.requests == []
    # A commit, or a listed tag, reaches the Hub.
    events = await download(local, "tiny", HEX40)
    assert events[-1].done
    assert any(HEX40 in path for _, path in local.hub.requests)


async def test_a_download_over_the_size_cap_is_refused(local: Local) -> None:
    # 2.6 MB of weights, 2 MB allowed: refused from the sizes the Hub lists.
    err = refused(await download(local, "big", ""), grpc.StatusCode.INVALID_ARGUMENT)
    assert "max_download_mb = 2" in (err.details() or "") and "listed" in (err.details() or "")
    assert local.hub.downloads() == []
    # A Hub that understates the size: stopped by the bytes received.
    local.hub.repos["acme/big"].understate_size.add("onnx/model.onnx")
    err = refused(await download(local, "big", ""), grpc.StatusCode.INVALID_ARGUMENT)
    assert "max_download_mb = 2" in (err.details() or "") and "received" in (err.details() or "")
    outcome = await local.watch(
        "embed over the size cap",
        lambda: local.stub.Embed(inference_pb2.EmbedRequest(text="hello", model="big")),
    )
    refused(outcome, grpc.StatusCode.INVALID_ARGUMENT)


# -- undecodable messages ---------------------------------------------------------------------

INVALID_UTF8 = b"\x0a\x04ab\xff\xfe" + b"\x12\x06gpt-4o"  # CountTokensRequest.text = b"ab\xff\xfe"
GARBAGE = b"\xff\xff\xff\xff\x0f"
UNDECODABLE = [
    ("/ratatoskr.v1.Ratatoskr/CountTokens", INVALID_UTF8, False),
    ("/ratatoskr.v1.Ratatoskr/CountTokens", GARBAGE, False),
    ("/ratatoskr.v1.Ratatoskr/Chat", GARBAGE, False),
    ("/ratatoskr.v1.Ratatoskr/ChatStream", GARBAGE, True),
    ("/ratatoskr.v1.AdminService/DownloadModel", b"\x0a\x02\xc3\x28", True),
]


async def raw_call(channel: grpc.aio.Channel, method: str, body: bytes, stream: bool) -> Any:
    if stream:
        call = channel.unary_stream(method)(body, timeout=10)
        return [reply async for reply in call]
    return await channel.unary_unary(method)(body, timeout=10)


@pytest.mark.parametrize(("method", "body", "stream"), UNDECODABLE)
async def test_undecodable_messages_are_invalid_argument_with_one_log_line(
    local: Local, method: str, body: bytes, stream: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    outcome = await local.watch(
        f"undecodable {method.rsplit('/', 1)[1]} {body[:6]!r}",
        lambda: raw_call(local.channel, method, body, stream),
    )
    err = refused(outcome, grpc.StatusCode.INVALID_ARGUMENT)
    assert "could not be decoded" in (err.details() or "")
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert len([r for r in caplog.records if "could not be decoded" in r.getMessage()]) == 1


# -- hostile upstreams ----------------------------------------------------------------------------

ANTHROPIC_KEY = "sk-ant-hostile-test-0123456789"
OPENAI_KEY = "sk-openai-hostile-test-0123456789"
LINE_BYTES = 64 * 1024 * 1024


class Upstreams:
    """On loopback: ``origin`` answers every request with a 307 to ``other``, which
    records the headers it receives; ``flood`` streams one 64 MB SSE line."""

    def __init__(self) -> None:
        self.seen_by_other: list[dict[str, str]] = []
        self.runners: list[web.AppRunner] = []
        self.ports: dict[str, int] = {}

    async def _serve(self, name: str, handler: Callable[[web.Request], Awaitable[Any]]) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.runners.append(runner)
        self.ports[name] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def url(self, name: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    async def start(self) -> Upstreams:
        async def other(request: web.Request) -> web.Response:
            self.seen_by_other.append(dict(request.headers))
            return web.json_response({"error": "you should not be here"}, status=400)

        async def origin(request: web.Request) -> web.Response:
            raise web.HTTPTemporaryRedirect(self.url("other", request.path))

        async def flood(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            chunk = b"x" * (1024 * 1024)
            try:
                await response.write(b"data: ")
                for _ in range(LINE_BYTES // len(chunk)):
                    await response.write(chunk)
                await response.write(b"\n\n")
            except (ConnectionError, RuntimeError):
                pass  # ratd hung up, as it should
            return response

        await self._serve("other", other)
        await self._serve("origin", origin)
        await self._serve("flood", flood)
        return self

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()


@pytest.fixture
async def upstreams() -> AsyncIterator[tuple[Upstreams, Daemon]]:
    fakes = await Upstreams().start()
    config = make_config(
        f"""
[providers.anthropic]
base_url = "{fakes.url("origin")}"
[providers.openai]
base_url = "{fakes.url("origin", "/v1")}"
[providers.flood]
kind = "openai_compatible"
base_url = "{fakes.url("flood", "/v1")}"
""",
        env={"ANTHROPIC_API_KEY": ANTHROPIC_KEY, "OPENAI_API_KEY": OPENAI_KEY},
    )
    try:
        async with running_daemon(config) as daemon:
            yield fakes, daemon
    finally:
        await fakes.stop()


def chat(model: str, **options: Any) -> chat_pb2.ChatRequest:
    return chat_pb2.ChatRequest(
        messages=[chat_pb2.Message(role=chat_pb2.ROLE_USER, content="hi")],
        options=chat_pb2.ChatOptions(model=model, **options),
    )


@pytest.mark.parametrize("model", ["anthropic:claude-sonnet-4-5", "openai:gpt-4o-mini"])
async def test_a_redirect_to_another_origin_never_carries_the_key(
    upstreams: tuple[Upstreams, Daemon], model: str
) -> None:
    fakes, daemon = upstreams
    async with grpc.aio.insecure_channel(daemon.address) as channel:
        stub = ratatoskr_pb2_grpc.RatatoskrStub(channel)
        outcome, health = await watched(channel, lambda: stub.Chat(chat(model), timeout=30))
    report(f"redirect {model}", health)
    err = refused(outcome, grpc.StatusCode.UNAVAILABLE)
    assert "redirect" in (err.details() or "")
    seen = repr(fakes.seen_by_other)
    assert ANTHROPIC_KEY not in seen and OPENAI_KEY not in seen
    assert fakes.seen_by_other == []  # never followed at all


async def test_a_64_mb_sse_line_is_unavailable(upstreams: tuple[Upstreams, Daemon]) -> None:
    _, daemon = upstreams

    async def call() -> list[Any]:
        request = chat_pb2.ChatStreamRequest(
            messages=[chat_pb2.Message(role=chat_pb2.ROLE_USER, content="hi")],
            options=chat_pb2.ChatOptions(model="flood:big-line"),
        )
        return [event async for event in stub.ChatStream(request, timeout=60)]

    async with grpc.aio.insecure_channel(daemon.address) as channel:
        stub = ratatoskr_pb2_grpc.RatatoskrStub(channel)
        outcome, health = await watched(channel, call)
    report("64 MB SSE line", health)
    refused(outcome, grpc.StatusCode.UNAVAILABLE)


# -- hostile model names and JSON -----------------------------------------------------------------


@pytest.mark.parametrize(
    "model",
    ["models/../../v1/files/x", "openai:../../admin", "gpt-4o\nrequest forged=1", "/etc/passwd"],
)
async def test_model_strings_that_rewrite_paths_or_logs_are_refused(
    local: Local, model: str
) -> None:
    outcome = await local.watch(
        f"model {model!r}", lambda: local.stub.Chat(chat(model), timeout=10)
    )
    refused(outcome, grpc.StatusCode.INVALID_ARGUMENT)


@pytest.mark.parametrize("depth", [256, 300, 1000])
async def test_deeply_nested_json_is_invalid_argument(local: Local, depth: int) -> None:
    nested = "[" * depth + "]" * depth
    options = '{"x": ' + nested + "}"
    outcome = await local.watch(
        f"JSON nested {depth} deep",
        lambda: local.stub.Chat(chat("gpt-4o-mini", raw_provider_options=options), timeout=10),
    )
    err = refused(outcome, grpc.StatusCode.INVALID_ARGUMENT)
    assert "raw_provider_options" in (err.details() or "")


def test_base_url_userinfo_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as caught:
        make_config('[providers.openai]\nbase_url = "https://user:hunter2-secret@example.com/v1"')
    assert "credentials" in str(caught.value) and "hunter2-secret" not in str(caught.value)


# -- fuzzed metadata --------------------------------------------------------------------------

CALLER_KEY = "rat_hostile-suite-key-0123456789"
AUTH_CONFIG = f"""
[auth]
mode = "api_key"
[tenants.acme]
api_key_sha256 = ["{hashlib.sha256(CALLER_KEY.encode()).hexdigest()}"]
roles = ["inference"]
"""


class BackgroundRatd:
    """ratd on an event loop of its own thread, for sync clients driven by hypothesis."""

    def __init__(self, config_text: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.daemon: Daemon = self._run(self._start(config_text))

    @staticmethod
    async def _start(config_text: str) -> Daemon:
        daemon = Daemon(make_config(config_text))  # its grpc.aio server binds this loop
        await daemon.start()
        return daemon

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def close(self) -> None:
        self._run(self.daemon.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class HealthThread:
    """Health checks from a thread of their own, back to back, while the fuzzing runs."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.stub = health_pb2_grpc.HealthStub(self.channel)
        self.stop = threading.Event()
        self.worst = 0.0
        self.replies = 0
        self.failures: list[str] = []
        self.thread = threading.Thread(target=self._probe, daemon=True)
        self.thread.start()

    def _probe(self) -> None:
        while not self.stop.wait(0.02):
            sent = time.monotonic()
            try:
                self.stub.Check(health_pb2.HealthCheckRequest(), timeout=HANG_SECONDS)
            except grpc.RpcError as err:
                self.failures.append(str(err.code()))
                continue
            self.worst = max(self.worst, time.monotonic() - sent)
            self.replies += 1

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.channel.close()


@pytest.fixture(scope="module")
def fuzz_ratd() -> Iterator[tuple[BackgroundRatd, grpc.Channel]]:
    ratd = BackgroundRatd(AUTH_CONFIG)
    channel = grpc.insecure_channel(ratd.daemon.address)
    try:
        yield ratd, channel
    finally:
        channel.close()
        ratd.close()


_KEY = st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,24}", fullmatch=True).filter(
    lambda k: not k.startswith("grpc-") and not k.endswith("-bin") and k not in {"te"}
)
_VALUE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=120).map(str.strip)
_AUTH_VALUE = st.one_of(
    _VALUE,
    st.just(f"Bearer {CALLER_KEY}"),
    st.just(CALLER_KEY),
    _VALUE.map(lambda v: f"Bearer {v}"),
)
_PAIR = st.one_of(
    st.tuples(_KEY, _VALUE),
    st.tuples(st.sampled_from(["authorization", "x-api-key"]), _AUTH_VALUE),
    st.tuples(_KEY.map(lambda k: k + "-bin"), st.binary(max_size=64)),
)
FUZZ_WORST: list[float] = []


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(metadata=st.lists(_PAIR, max_size=8), which=st.sampled_from(["presets", "count", "chat"]))
def test_fuzzed_metadata_never_gets_internal_or_unknown(
    fuzz_ratd: tuple[BackgroundRatd, grpc.Channel], metadata: list[tuple[str, Any]], which: str
) -> None:
    _, channel = fuzz_ratd
    calls = {
        "presets": lambda: channel.unary_unary(
            "/ratatoskr.v1.Ratatoskr/ListPresets",
            request_serializer=models_pb2.ListPresetsRequest.SerializeToString,
        )(models_pb2.ListPresetsRequest(), metadata=metadata, timeout=HANG_SECONDS),
        "count": lambda: channel.unary_unary("/ratatoskr.v1.Ratatoskr/CountTokens")(
            GARBAGE, metadata=metadata, timeout=HANG_SECONDS
        ),
        "chat": lambda: channel.unary_unary(
            "/ratatoskr.v1.Ratatoskr/Chat",
            request_serializer=chat_pb2.ChatRequest.SerializeToString,
        )(chat("gpt-4o-mini"), metadata=metadata, timeout=HANG_SECONDS),
    }
    try:
        calls[which]()
    except grpc.RpcError as err:
        assert err.code() not in BAD, (metadata, err.code(), err.details())


def test_fuzzed_metadata_while_health_answers(
    fuzz_ratd: tuple[BackgroundRatd, grpc.Channel],
) -> None:
    ratd, _ = fuzz_ratd
    health = HealthThread(ratd.daemon.address)
    try:
        test_fuzzed_metadata_never_gets_internal_or_unknown(fuzz_ratd)
    finally:
        health.finish()
    assert not health.failures and health.replies >= 1 and health.worst < HANG_SECONDS
    print(
        f"health fuzzed metadata: worst {health.worst * 1000:.1f} ms over {health.replies} probes"
    )


async def test_undecodable_requests_are_refused_for_unauthenticated_callers_first() -> None:
    async with running_daemon(make_config(AUTH_CONFIG)) as daemon:
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            count = channel.unary_unary("/ratatoskr.v1.Ratatoskr/CountTokens")
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await count(GARBAGE, timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await count(
                    GARBAGE, timeout=10, metadata=(("authorization", f"Bearer {CALLER_KEY}"),)
                )
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# -- TLS misuse -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def credentials(pki: Pki, name: str | None, ca: Path | None = None) -> grpc.ChannelCredentials:
    pair = pki.clients[name] if name else None
    return grpc.ssl_channel_credentials(
        root_certificates=(ca or pki.ca).read_bytes(),
        private_key=pair.key.read_bytes() if pair else None,
        certificate_chain=pair.cert.read_bytes() if pair else None,
    )


@pytest.fixture
async def mtls_daemon(pki: Pki) -> AsyncIterator[Daemon]:
    config = make_config(
        f"""
[server]
address = "127.0.0.1:0"
metrics_address = ""
tls_cert_file = "{pki.server.cert}"
tls_key_file = "{pki.server.key}"
tls_client_ca_file = "{pki.ca}"
[auth]
mode = "mtls"
[tenants.acme]
mtls_subjects = ["CN=acme-batch"]
"""
    )
    async with running_daemon(config) as daemon:
        yield daemon


MISUSE = {
    "plaintext to the TLS port": (None, None, grpc.StatusCode.UNAVAILABLE),
    "no client certificate": ("tls", None, grpc.StatusCode.UNAVAILABLE),
    "expired client certificate": ("tls", "expired", grpc.StatusCode.UNAVAILABLE),
    "certificate of another CA": ("tls", "foreign", grpc.StatusCode.UNAVAILABLE),
    "server checked against another CA": ("other-ca", "acme", grpc.StatusCode.UNAVAILABLE),
    "known CA, unknown subject": ("tls", "stranger", grpc.StatusCode.UNAUTHENTICATED),
}


@pytest.mark.parametrize("case", sorted(MISUSE))
async def test_tls_misuse_is_refused_while_health_answers(
    mtls_daemon: Daemon, pki: Pki, case: str
) -> None:
    mode, name, code = MISUSE[case]
    address = f"localhost:{mtls_daemon.address.rsplit(':', 1)[1]}"
    if mode is None:
        hostile = grpc.aio.insecure_channel(address)
    else:
        ca = pki.other_ca if mode == "other-ca" else None
        hostile = grpc.aio.secure_channel(address, credentials(pki, name, ca))
    good = grpc.aio.secure_channel(address, credentials(pki, "acme"))
    try:
        presets = hostile.unary_unary(
            "/ratatoskr.v1.Ratatoskr/ListPresets",
            request_serializer=models_pb2.ListPresetsRequest.SerializeToString,
        )
        outcome, health = await watched(
            good, lambda: presets(models_pb2.ListPresetsRequest(), timeout=10)
        )
    finally:
        await hostile.close()
        await good.close()
    report(f"TLS {case}", health)
    refused(outcome, code)
