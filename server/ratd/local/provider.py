"""``LocalProvider``: the gateway's view of local inference.

Requests arrive with the model already routed here. Tokenizing happens in a small thread
pool (a 1 MB text takes a while), inference in the model's batcher, and the results are
turned into ratatoskr.v1 messages; nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
from google.protobuf import timestamp_pb2

from ratatoskr.v1 import admin_pb2, inference_pb2, media_pb2, models_pb2
from ratd import errors
from ratd.config import Config, LocalConfig, ProviderConfig
from ratd.local import audio, sources
from ratd.local.catalog import EMBEDDING, NLI, SPEECH_TO_TEXT, Catalog, ModelSpec
from ratd.local.manager import Entry, Loaders, ModelManager, State
from ratd.local.nli import NliModel
from ratd.local.onnx_model import OnnxModel
from ratd.local.revisions import check_revision
from ratd.local.speech import SpeechModel
from ratd.local.tokenizers import TokenizerRegistry, encode_one, tokenize_response
from ratd.local.zero_shot import (
    DEFAULT_TEMPLATE,
    STANCE_HYPOTHESES,
    check_labels,
    classify_response,
    encode_claims,
    hypotheses,
    label_scores,
    stance_response,
)
from ratd.providers.base import Provider

log = logging.getLogger(__name__)

T = TypeVar("T")

_STATUS = {
    State.AVAILABLE: models_pb2.MODEL_STATUS_AVAILABLE,
    State.LOADING: models_pb2.MODEL_STATUS_LOADING,
    State.READY: models_pb2.MODEL_STATUS_READY,
    State.UNLOADING: models_pb2.MODEL_STATUS_UNLOADING,
}
_KIND_NAMES = {EMBEDDING: "embedding", NLI: "nli", SPEECH_TO_TEXT: "speech_to_text"}
# How an operation names the kind of model it needs, for refusals.
_KIND_PHRASES = {
    EMBEDDING: "an embedding model",
    NLI: "an NLI (cross-encoder) model",
    SPEECH_TO_TEXT: "a speech-to-text model",
}
# Least time between two progress messages of one download.
_PROGRESS_INTERVAL = 0.1


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


_CAPABILITIES = {
    EMBEDDING: (models_pb2.MODEL_CAPABILITY_EMBED,),
    NLI: (
        models_pb2.MODEL_CAPABILITY_NLI,
        models_pb2.MODEL_CAPABILITY_CLASSIFY,
        models_pb2.MODEL_CAPABILITY_STANCE,
    ),
    SPEECH_TO_TEXT: (models_pb2.MODEL_CAPABILITY_SPEECH_TO_TEXT,),
}
_COMMON = (models_pb2.MODEL_CAPABILITY_TOKEN_COUNTING, models_pb2.MODEL_CAPABILITY_LOCAL_INFERENCE)


def describe(spec: ModelSpec) -> models_pb2.ModelMetadata:
    """What the catalog knows of a local model, without loading it: what it serves, its
    width and input limit where the definition states them, and a price of zero."""
    free = models_pb2.PricingInfo(prompt_cost_per_mtok=0.0, completion_cost_per_mtok=0.0)
    info = models_pb2.ModelInfo(
        id=spec.name,
        provider="local",
        capabilities=[*_CAPABILITIES.get(spec.kind, ()), *_COMMON],
        pricing=free,
    )
    if spec.dimensions:
        info.dimensions = spec.dimensions
    if spec.max_seq_length:
        info.context_window = spec.max_seq_length
    return models_pb2.ModelMetadata(info=info, pricing=free)


def hub_settings(config: LocalConfig, models_dir: Path) -> sources.HubSettings:
    cache = Path(config.hub_cache_dir).expanduser() if config.hub_cache_dir else models_dir / "hub"
    endpoint = config.hub_endpoint or os.environ.get("HF_ENDPOINT") or None
    token = os.environ.get("HF_TOKEN") or None
    return sources.HubSettings(
        cache,
        endpoint.rstrip("/") if endpoint else None,
        config.hub_downloads,
        token,
        config.max_download_mb,
    )


class LocalProvider(Provider):
    def __init__(self, config: Config, *, loaders: Loaders | None = None) -> None:
        """``loaders``: how models are found, built and measured (the real ones unless
        given; tests give a meter with known costs)."""
        super().__init__("local", ProviderConfig(kind="local"), None)
        assert config.local is not None
        self.local = config.local
        self.models_dir = Path(self.local.models_dir).expanduser()
        self.hub = hub_settings(self.local, self.models_dir)
        self.catalog = Catalog(self.local)
        if not any(spec.kind == SPEECH_TO_TEXT for spec in self.catalog):
            # No built-in model transcribes: offered only when one is configured.
            self.capabilities = self.capabilities - {"transcribe"}
        # With auth on, AdminService callers are admins (the interceptor requires it).
        self.callers_are_admins = config.auth.mode != "none"
        # Inference: one batch in flight per model; a few models may compute at once.
        self.inference_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ratd-onnx")
        # Tokenization: separate, so that a huge text never queues behind inference.
        self.tokenize_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ratd-tokenize")
        self.manager = ModelManager(
            self.local,
            self.catalog,
            self.inference_pool,
            models_dir=self.models_dir,
            hub=self.hub,
            loaders=loaders,
        )
        directory = (
            Path(self.local.tokenizers_dir).expanduser() if self.local.tokenizers_dir else None
        )
        self.tokenizers = TokenizerRegistry(
            self.catalog,
            directory=directory,
            cache_dir=self.models_dir / "tokenizers",
            models_dir=self.models_dir,
            hub=self.hub,
            aliases=self.local.tokenizer_aliases,
        )

    async def start(self) -> None:
        await self.manager.start()
        if self.local.preload_tokenizers:
            await self.tokenizers.preload()

    def reusable_for(self, config: Config) -> bool:
        return config.local == self.local and self.callers_are_admins == (
            config.auth.mode != "none"
        )

    async def close(self) -> None:
        await self.manager.close()
        self.inference_pool.shutdown(wait=False, cancel_futures=True)
        self.tokenize_pool.shutdown(wait=False, cancel_futures=True)

    def model_names(self) -> frozenset[str]:
        return self.catalog.names()

    describes_offline = True

    async def describe_models(self) -> list[models_pb2.ModelMetadata]:
        """The catalog (built-in and configured models), from memory: nothing is loaded."""
        return [describe(spec) for spec in self.catalog]

    async def list_models(self) -> list[models_pb2.ModelInfo]:
        return [md.info for md in await self.describe_models()]

    # -- helpers -------------------------------------------------------------------------------

    def _spec(self, model: str, kind: str, operation: str) -> ModelSpec:
        spec = self.manager.spec(model)
        if spec.kind != kind:
            raise errors.InvalidInput(
                f"model: {model} is {_KIND_PHRASES.get(spec.kind, spec.kind)}; "
                f"{operation} needs {_KIND_PHRASES[kind]}",
                field="model",
                provider=self.name,
                model=model,
            )
        return spec

    async def _run_pairs(self, entry: Entry, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        model = entry.model
        batcher = entry.batcher
        assert isinstance(model, OnnxModel) and batcher is not None
        loop = asyncio.get_running_loop()
        encoded = await loop.run_in_executor(self.tokenize_pool, model.encode_pairs, pairs)
        rows = await batcher.submit(encoded)
        return np.stack(rows)

    async def _run_claims(self, entry: Entry, text: str, claims: Sequence[str]) -> np.ndarray:
        """Logits of (text, claim) pairs: text cut to the window, cost within
        max_classify_tokens, and the encoding stopped if the caller goes away."""
        model = entry.model
        batcher = entry.batcher
        assert isinstance(model, OnnxModel) and batcher is not None
        cancelled = threading.Event()
        budget = self.local.max_classify_tokens
        try:
            encoded = await self._in_pool(
                lambda: encode_claims(model, text, claims, budget, cancelled)
            )
        except asyncio.CancelledError:
            cancelled.set()
            raise
        rows = await batcher.submit(encoded)
        return np.stack(rows)

    # -- inference -----------------------------------------------------------------------------

    async def embed(
        self, texts: Sequence[str], model: str, dimensions: int | None = None
    ) -> list[inference_pb2.Embedding]:
        spec = self._spec(model, EMBEDDING, "embeddings")
        if not spec.matryoshka:
            self.no_dimensions(
                model,
                dimensions,
                "it is not marked as Matryoshka-trained (matryoshka = true in its "
                "[providers.local.models] table)",
            )
        async with self.manager.use(model) as entry:
            assert isinstance(entry.model, OnnxModel) and entry.batcher is not None
            loop = asyncio.get_running_loop()
            encoded = await loop.run_in_executor(
                self.tokenize_pool, entry.model.encode_texts, list(texts)
            )
            rows = await entry.batcher.submit(encoded)
        if dimensions is not None:
            rows = [self._shorten(row, dimensions, model) for row in rows]
        return [
            inference_pb2.Embedding(values=row.tolist(), model=model, dimensions=int(row.shape[0]))
            for row in rows
        ]

    def _shorten(self, row: np.ndarray, dimensions: int, model: str) -> np.ndarray:
        """Matryoshka: the first ``dimensions`` values, L2-normalised again (a prefix of a
        unit vector is shorter than 1, and cosine and dot product should agree)."""
        if dimensions > row.shape[0]:
            raise errors.InvalidInput(
                f"dimensions: {model} embeds in {row.shape[0]} dimensions; "
                f"cannot return {dimensions}",
                field="dimensions",
                provider=self.name,
                model=model,
            )
        prefix = row[:dimensions]
        norm = float(np.linalg.norm(prefix))
        return prefix / norm if norm > 0 else prefix

    async def infer_nli(
        self, pairs: Sequence[inference_pb2.NliPair], model: str
    ) -> list[inference_pb2.NliResult]:
        self._spec(model, NLI, "NLI")
        async with self.manager.use(model) as entry:
            logits = await self._run_pairs(entry, [(p.premise, p.hypothesis) for p in pairs])
            nli = entry.model
        assert isinstance(nli, NliModel)
        return [nli.result(row) for row in logits]

    async def classify_zero_shot(
        self, request: inference_pb2.ClassifyZeroShotRequest, model: str
    ) -> inference_pb2.ClassifyZeroShotResponse:
        spec = self._spec(model, NLI, "zero-shot classification")
        labels = list(request.labels)
        check_labels(labels)
        template = (
            request.hypothesis_template
            if request.HasField("hypothesis_template")
            else spec.hypothesis_template or DEFAULT_TEMPLATE
        )
        claims = hypotheses(labels, template)
        async with self.manager.use(model) as entry:
            logits = await self._run_claims(entry, request.text, claims)
            nli = entry.model
        assert isinstance(nli, NliModel)
        scores = label_scores(logits, nli.labels, multi_label=request.multi_label)
        return classify_response(labels, scores)

    async def classify_stance(
        self, request: inference_pb2.ClassifyStanceRequest, model: str
    ) -> inference_pb2.ClassifyStanceResponse:
        self._spec(model, NLI, "stance classification")
        claims = [
            template.replace("{}", request.target, 1) for template in STANCE_HYPOTHESES.values()
        ]
        async with self.manager.use(model) as entry:
            logits = await self._run_claims(entry, request.text, claims)
            nli = entry.model
        assert isinstance(nli, NliModel)
        return stance_response(request.target, label_scores(logits, nli.labels, multi_label=False))

    # -- speech to text -------------------------------------------------------------------------

    async def transcribe(
        self, request: media_pb2.TranscribeRequest, model: str
    ) -> media_pb2.TranscribeResponse:
        """Decoding and resampling (before the model loads, so bad audio costs no load) and
        the log-mel features run in the tokenize pool; the windows go through the model's
        batcher like any other input."""
        self._spec(model, SPEECH_TO_TEXT, "transcription")
        if request.mime_type not in ("", "audio/wav", "audio/x-wav", "audio/wave"):
            raise errors.InvalidInput(
                f"audio: {request.mime_type} is not decoded by local models; they take "
                f"{audio.ACCEPTED}",
                field="audio",
                provider=self.name,
                model=model,
            )
        samples = await self._in_pool(lambda: self._decoded(request.audio))
        seconds = samples.size / audio.SAMPLE_RATE
        async with self.manager.use(model) as entry:
            speech, batcher = entry.model, entry.batcher
            assert isinstance(speech, SpeechModel) and batcher is not None
            windows = await self._in_pool(lambda: speech.windows(samples, request))
            decoded = await batcher.submit([w for _, _, w in windows])
        pieces = [(start, end, d) for (start, end, _), d in zip(windows, decoded, strict=True)]
        answer = speech.response(pieces, seconds, request.timestamps, request.language)
        answer.model, answer.provider = model, self.name
        return answer

    def _decoded(self, data: bytes) -> np.ndarray:
        """16 kHz mono samples, once the header shows the audio within max_audio_secs."""
        limit = self.local.max_audio_secs
        seconds = audio.duration(data)
        if limit and seconds > limit:
            raise errors.InvalidInput(
                f"audio: {seconds:.1f} s of audio, over the {limit:g} s local models take "
                "(providers.local.max_audio_secs)",
                field="audio",
                provider=self.name,
            )
        samples, rate = audio.decode_wav(data)
        return audio.to_model_rate(samples, rate)

    # -- tokens --------------------------------------------------------------------------------
    # Tokenizing megabytes takes seconds: it runs in the tokenize pool with encode_batch,
    # which releases the GIL (encode does not, and would stall the event loop from any
    # thread). The reply is built there too: one Token message per token is slow in Python.

    async def _in_pool(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.tokenize_pool, work)

    async def count_tokens(self, text: str, model: str) -> inference_pb2.CountTokensResponse:
        found = await self.tokenizers.get(model)

        def count() -> inference_pb2.CountTokensResponse:
            encoding = encode_one(found, text)
            return inference_pb2.CountTokensResponse(
                count=len(encoding), tokenizer=found.name, approximate=found.approximate
            )

        return await self._in_pool(count)

    async def tokenize(self, text: str, model: str) -> inference_pb2.TokenizeResponse:
        found = await self.tokenizers.get(model)
        limit = self.local.max_tokenize_tokens
        return await self._in_pool(lambda: tokenize_response(found, text, limit))

    # -- models --------------------------------------------------------------------------------

    def _loaded_model(self, entry: Entry) -> models_pb2.LoadedModel:
        timeout = self.local.idle_timeout_secs
        message = models_pb2.LoadedModel(
            name=entry.name,
            kind=_KIND_NAMES.get(entry.spec.kind, entry.spec.kind),
            status=_STATUS[entry.state],
            bytes=entry.bytes,
            device=entry.device,
            in_use=entry.in_use,
            pinned=entry.pinned,
            source=entry.source,
        )
        if entry.last_used:
            message.last_used.CopyFrom(_timestamp(entry.last_used))
            if (
                entry.state is State.READY
                and timeout > 0
                and not entry.pinned
                and entry.in_use == 0
            ):
                message.expires_at.CopyFrom(_timestamp(entry.last_used + timeout))
        return message

    async def model_status(self, model: str) -> models_pb2.ModelStatusResponse | None:
        spec = self.catalog.get(model)
        if spec is None:
            return None
        entry = self.manager.entry(model)
        response = models_pb2.ModelStatusResponse(
            status=_STATUS[entry.state], local=self._loaded_model(entry)
        )
        if entry.state is State.AVAILABLE:
            offline = sources.HubSettings(
                self.hub.cache_dir, self.hub.endpoint, False, self.hub.token
            )
            try:
                files = await asyncio.to_thread(sources.resolve, spec, self.models_dir, offline)
                response.local.source = files.source
            except errors.GatewayError as err:
                if spec.hub_repo and self.hub.allow_downloads:
                    response.reason = (
                        f"not downloaded yet: fetched from the Hub ({spec.hub_repo}) on first use"
                    )
                else:
                    response.status = models_pb2.MODEL_STATUS_UNAVAILABLE
                    response.reason = err.message
            if entry.last_error:
                response.status = models_pb2.MODEL_STATUS_UNAVAILABLE
                response.reason = f"the last load failed: {entry.last_error}"
        return response

    async def list_loaded(self) -> list[models_pb2.LoadedModel]:
        return [
            self._loaded_model(e)
            for e in self.manager.entries.values()
            if e.state is not State.AVAILABLE
        ]

    async def load_model(self, model: str, pin: bool) -> models_pb2.LoadedModel:
        entry = await self.manager.load(model, pin=pin)
        return self._loaded_model(entry)

    async def unload_model(self, model: str) -> bool:
        return await self.manager.unload(model)

    async def download_model(
        self, model: str, revision: str
    ) -> AsyncIterator[admin_pb2.DownloadModelResponse]:
        check_revision(revision, self.local.allowed_revisions, admin=self.callers_are_admins)
        queue: asyncio.Queue[admin_pb2.DownloadModelResponse] = asyncio.Queue()
        last_sent: dict[str, float] = {}

        def report(file: str, done: int, total: int, finished: bool) -> None:
            now = time.monotonic()
            if not finished and done and now - last_sent.get(file, 0.0) < _PROGRESS_INTERVAL:
                return
            last_sent[file] = now
            queue.put_nowait(
                admin_pb2.DownloadModelResponse(file=file, downloaded_bytes=done, total_bytes=total)
            )

        task = asyncio.ensure_future(self.manager.download(model, revision, report))
        try:
            while not task.done() or not queue.empty():
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                else:
                    getter.cancel()
            files = task.result()
        finally:
            if not task.done():
                task.cancel()
        yield admin_pb2.DownloadModelResponse(
            done=True, path=str(files.layers[0]), file=files.onnx_file
        )
