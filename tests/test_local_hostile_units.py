"""The local-inference defences of #13 at the unit level, on real parts: the batcher's
queue after a caller goes away, zero-shot claims encoded in chunks that stop once the
caller is gone, and tokenizer files confined to tokenizers_dir."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from ratd import errors
from ratd.config import LocalConfig
from ratd.local import sources
from ratd.local.batcher import Batcher, BatchLimits
from ratd.local.catalog import NLI, Catalog, ModelSpec
from ratd.local.nli import NliModel
from ratd.local.onnx_model import Encoded
from ratd.local.sessions import SessionSettings
from ratd.local.tokenizers import TokenizerRegistry
from ratd.local.zero_shot import encode_claims
from tests.fakes.hub_models import make_tokenizer, write_model


def item(length: int) -> Encoded:
    return Encoded(np.ones(length, dtype=np.int64), np.zeros(length, dtype=np.int64))


async def test_a_gone_callers_queued_items_leave_the_queue_and_never_run() -> None:
    started = threading.Event()
    release = threading.Event()
    ran: list[int] = []

    def run(batch: list[Encoded]) -> np.ndarray:
        ran.append(len(batch))
        started.set()
        release.wait(10)
        return np.zeros((len(batch), 2), dtype=np.float32)

    pool = ThreadPoolExecutor(1)
    batcher = Batcher("m", run, pool, BatchLimits(max_batch_size=1, max_wait=0))
    batcher.start()
    try:
        call = asyncio.ensure_future(batcher.submit([item(3), item(3), item(3)]))
        await asyncio.to_thread(started.wait, 10)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert batcher.queued == 0  # the caller's waiting items are gone at once
        release.set()
        # The next caller's item runs right after the batch in flight, nothing in between.
        (row,) = await batcher.submit([item(2)])
        assert row.shape == (2,)
        assert ran == [1, 1]
    finally:
        release.set()
        await batcher.close()
        pool.shutdown()


@pytest.fixture(scope="module")
def nli(tmp_path_factory: pytest.TempPathFactory) -> NliModel:
    directory = tmp_path_factory.mktemp("nli")
    write_model(directory, "nli", id2label={0: "contradiction", 1: "entailment"})
    files = sources.ModelFiles((directory,), "model.onnx", "test")
    return NliModel(ModelSpec("tiny", NLI), files, SessionSettings(threads=1))


def test_claims_use_the_text_cut_to_the_window(nli: NliModel) -> None:
    text = "cats love rain " * 100_000
    encoded = encode_claims(nli, text, ["sun", "rain"], 10_000, threading.Event())
    reference = make_tokenizer()
    reference.enable_truncation(nli.max_length, strategy="longest_first")
    expected = reference.encode_batch([(text[:2000], "sun"), (text[:2000], "rain")])
    assert [e.ids.tolist() for e in encoded] == [e.ids for e in expected]


def test_claims_over_the_budget_are_refused_naming_it(nli: NliModel) -> None:
    labels = [f"label {i}" for i in range(256)]
    with pytest.raises(errors.InvalidInput, match="max_classify_tokens = 1000"):
        encode_claims(nli, "cats love rain " * 1000, labels, 1000, threading.Event())


def test_claims_stop_when_the_caller_is_gone(nli: NliModel) -> None:
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(errors.Timeout, match="gone"):
        encode_claims(nli, "cats", [f"l{i}" for i in range(100)], 100_000, cancelled)


@pytest.mark.parametrize("escape", ["../outside", "../secret", "sub/../../outside", "{abs}"])
def test_tokenizer_files_stay_inside_tokenizers_dir(tmp_path: Path, escape: str) -> None:
    directory = tmp_path / "tokenizers"
    (directory / "sub").mkdir(parents=True)
    make_tokenizer().save(str(tmp_path / "outside.tokenizer.json"))
    (tmp_path / "secret").mkdir()
    make_tokenizer().save(str(tmp_path / "secret" / "tokenizer.json"))
    make_tokenizer().save(str(directory / "mine.tokenizer.json"))
    registry = TokenizerRegistry(
        Catalog(LocalConfig()),
        directory=directory,
        cache_dir=tmp_path / "cache",
        models_dir=tmp_path / "models",
        hub=sources.HubSettings(tmp_path / "hub", "http://127.0.0.1:9", allow_downloads=False),
        aliases={},
    )
    assert registry.tokenizer_for("mine") == ("mine", None)
    name = escape.replace("{abs}", str(tmp_path / "secret"))
    with pytest.raises(errors.ModelNotFound) as caught:
        registry.tokenizer_for(name)
    # The same answer as for a file that does not exist: existence is not revealed.
    with pytest.raises(errors.ModelNotFound) as missing:
        registry.tokenizer_for(name + "-none")
    assert caught.value.message == missing.value.message.replace(name + "-none", name)


def test_built_in_hub_models_are_pinned_to_a_commit() -> None:
    import re

    from ratd.local.catalog import BUILTIN
    from ratd.local.revisions import COMMIT

    for spec in BUILTIN.values():
        assert spec.hub_repo, spec.name
        assert COMMIT.fullmatch(spec.revision), spec.name
        for name, digest in spec.sha256.items():
            assert re.fullmatch(r"[0-9a-f]{64}", digest), (spec.name, name)
    pinned = {name for name, spec in BUILTIN.items() if "onnx/model.onnx" in spec.sha256}
    assert pinned == {"bge-small-en-v1.5", "bge-base-en-v1.5", "multilingual-e5-small"}


def test_an_admin_may_name_any_revision_but_never_a_path() -> None:
    from ratd.local.revisions import check_revision

    check_revision("v2.0", [], admin=True)
    check_revision("", [], admin=False)  # the configured pin
    for hostile in ("..%2F..", "a/b", "..", "v1..2"):
        with pytest.raises(errors.InvalidInput, match="revision"):
            check_revision(hostile, [], admin=True)
    with pytest.raises(errors.RoleRequired, match="allowed_revisions"):
        check_revision("v2.0", ["v1.0"], admin=False)
