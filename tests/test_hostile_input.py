"""The hostile-input suite (#13): every way found to hurt ratd with crafted input, each
answered with a clear status (never INTERNAL or UNKNOWN) while Health keeps answering.

Health is measured by tests/support/health_watch.py: Health checks go out one after
another on a channel of their own while each hostile call is in flight; at least one must
complete during the call and none may take longer than its hang-detector deadline. The
worst round trip of each case is printed (``pytest -s``) as ``health <case>: ...``.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from ratatoskr.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    inference_pb2,
    ratatoskr_pb2_grpc,
)
from ratd.server import Daemon
from tests.fakes.hub import FakeHub
from tests.fakes.hub_models import write_model
from tests.support.daemon import make_config, running_daemon
from tests.support.health_watch import HealthReport, watched

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
    # Loaded first: reading the 27 MB tokenizer.json is a one-off, not the caller's doing.
    await local.stub.CountTokens(inference_pb2.CountTokensRequest(text="x", model="gpt-4o"))
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

    return await local.watch(f"download {model}@{revision}", call)


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
