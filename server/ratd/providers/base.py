"""What every provider offers the gateway core, and sensible defaults for what it lacks.

A provider speaks one upstream API. It takes the generated ratatoskr.v1 requests (with
the model already resolved by routing) and returns the generated responses; it never
sees gRPC. Operations it does not implement raise ``NotImplementedYet``, which lets the
fallback chain move on to a provider that can.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from ratatoskr.v1 import admin_pb2, chat_pb2, inference_pb2, media_pb2, models_pb2, realtime_pb2
from ratd import errors
from ratd.config import Config, ProviderConfig
from ratd.providers.apis import ModelApis
from ratd.providers.specs import BY_KIND
from ratd.secrets import Secret

ChatLike = chat_pb2.ChatRequest | chat_pb2.ChatStreamRequest
GenerateLike = chat_pb2.GenerateRequest | chat_pb2.GenerateStreamRequest

# GenerateOptions fields that ChatOptions has under the same name.
_SHARED_OPTIONS = (
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "reasoning",
    "raw_provider_options",
)


class Provider:
    """Base of all providers: subclasses override what their API does. What kind of
    provider it is, and what it serves, comes from its spec (``ratd.providers.specs``)."""

    def __init__(self, name: str, config: ProviderConfig, api_key: Secret | None) -> None:
        self.name = name
        self.config = config
        self.api_key = api_key
        self.spec = BY_KIND[config.kind]
        self.kind = self.spec.kind
        # The operations this provider serves, by routing capability name.
        self.capabilities: frozenset[str] = self.spec.capabilities
        # Which upstream API serves which model, for kinds that speak several: the
        # config's patterns here; the factory adds the registry seed's marks.
        self.model_apis = ModelApis.build(config.apis)

    async def start(self) -> None:
        """Prepare for requests (nothing by default; connections open lazily)."""

    async def close(self) -> None:
        """Release connections and anything else held."""

    def reusable_for(self, config: Config) -> bool:
        """Whether a reload to ``config`` may keep this very object instead of building a
        new one. Remote providers are rebuilt (their keys may have changed, and they hold
        nothing a new one lacks); a provider holding loaded models says yes when nothing it
        was built from changed, so a reload neither drops them nor loads them twice."""
        return False

    def _unsupported(self, operation: str, model: str = "") -> errors.NotImplementedYet:
        return errors.NotImplementedYet(
            f"{self.name} does not support {operation}", provider=self.name, model=model
        )

    def unsupported_parameters(self, model: str) -> frozenset[str]:
        """ChatOptions fields this API cannot take for ``model`` (validated by the core)."""
        return frozenset()

    def media_parts(self, model: str) -> frozenset[str]:
        """The content parts beyond text and images ("document", "audio", "video") the
        API that serves ``model`` reads; the core refuses others before calling it."""
        return frozenset()

    # -- realtime ---------------------------------------------------------------------

    async def realtime(self, config: realtime_pb2.RealtimeSessionConfig, model: str) -> Any:
        """An open realtime session (``ratd.providers.realtime.RealtimeUpstream``) with
        ``model``, configured by ``config``."""
        raise self._unsupported("realtime", model)

    # -- chat and generation ----------------------------------------------------------

    async def chat(self, request: ChatLike, model: str) -> chat_pb2.ChatResponse:
        raise self._unsupported("chat", model)

    def chat_stream(
        self, request: ChatLike, model: str
    ) -> AsyncIterator[chat_pb2.ChatStreamResponse]:
        raise self._unsupported("streaming chat", model)

    async def generate(self, request: GenerateLike, model: str) -> chat_pb2.GenerateResponse:
        """Generation as a one-message chat, for APIs without a completion endpoint."""
        reply = await self.chat(chat_request_for(request), model)
        return chat_pb2.GenerateResponse(
            text=reply.content,
            usage=reply.usage if reply.HasField("usage") else None,
            model=reply.model if reply.HasField("model") else None,
            finish_reason=reply.finish_reason,
            provider=reply.provider,
            reasoning=reply.reasoning if reply.HasField("reasoning") else None,
        )

    async def generate_stream(
        self, request: GenerateLike, model: str
    ) -> AsyncIterator[chat_pb2.GenerateStreamResponse]:
        """Streaming generation as a one-message chat stream."""
        async for event in self.chat_stream(chat_request_for(request), model):
            kind = event.WhichOneof("event")
            if kind == "content":
                yield chat_pb2.GenerateStreamResponse(text=event.content)
            elif kind == "reasoning":
                yield chat_pb2.GenerateStreamResponse(reasoning=event.reasoning)
            elif kind == "usage":
                yield chat_pb2.GenerateStreamResponse(usage=event.usage)
            elif kind == "done":
                yield chat_pb2.GenerateStreamResponse(
                    done=True,
                    finish_reason=event.finish_reason,
                    model=event.model,
                    provider=event.provider,
                )

    # -- inference ----------------------------------------------------------------------

    async def embed(
        self, texts: Sequence[str], model: str, dimensions: int | None = None
    ) -> list[inference_pb2.Embedding]:
        """``dimensions``: the length asked for (None: the model's own); a provider that
        cannot shorten embeddings refuses it with ``no_dimensions``."""
        raise self._unsupported("embeddings", model)

    def no_dimensions(self, model: str, dimensions: int | None, why: str = "") -> None:
        """Refuse ``dimensions`` where this provider cannot honour it: INVALID_ARGUMENT
        naming the field (the fallback chain may try a provider that can)."""
        if dimensions is None:
            return
        raise errors.UnsupportedParameter(
            f"{self.name} cannot shorten the embeddings of {model} "
            f"(dimensions = {dimensions}){': ' + why if why else ''}",
            provider=self.name,
            model=model,
            field="dimensions",
            parameter="dimensions",
            metadata={"parameter": "dimensions"},
        )

    async def infer_nli(
        self, pairs: Sequence[inference_pb2.NliPair], model: str
    ) -> list[inference_pb2.NliResult]:
        raise self._unsupported("NLI", model)

    async def classify_zero_shot(
        self, request: inference_pb2.ClassifyZeroShotRequest, model: str
    ) -> inference_pb2.ClassifyZeroShotResponse:
        raise self._unsupported("zero-shot classification", model)

    async def classify_stance(
        self, request: inference_pb2.ClassifyStanceRequest, model: str
    ) -> inference_pb2.ClassifyStanceResponse:
        raise self._unsupported("stance classification", model)

    async def count_tokens(self, text: str, model: str) -> inference_pb2.CountTokensResponse:
        raise self._unsupported("token counting", model)

    async def tokenize(self, text: str, model: str) -> inference_pb2.TokenizeResponse:
        raise self._unsupported("tokenization", model)

    # -- media ------------------------------------------------------------------------------

    async def generate_image(
        self, request: media_pb2.GenerateImageRequest, model: str
    ) -> media_pb2.GenerateImageResponse:
        raise self._unsupported("image generation", model)

    async def transcribe(
        self, request: media_pb2.TranscribeRequest, model: str
    ) -> media_pb2.TranscribeResponse:
        raise self._unsupported("transcription", model)

    def synthesize(
        self, request: media_pb2.SynthesizeRequest, model: str
    ) -> AsyncIterator[media_pb2.SynthesizeResponse]:
        """Audio chunks as the upstream sends them, then one with ``done`` set."""
        raise self._unsupported("speech synthesis", model)

    # -- models ---------------------------------------------------------------------------

    async def list_models(self) -> list[models_pb2.ModelInfo]:
        """The provider's model list, asked of the provider."""
        return []

    # True when describe_models needs no network (the local catalog): the registry asks
    # at start even when live refreshes are off.
    describes_offline = False

    async def describe_models(self) -> list[models_pb2.ModelMetadata]:
        """Metadata of the provider's models, asked of the provider (the registry's live
        layer). Providers whose list carries prices or parameter ranges say more."""
        return [models_pb2.ModelMetadata(info=info) for info in await self.list_models()]

    def model_names(self) -> frozenset[str]:
        """Model names this provider claims outright, ahead of the routing rules (the
        local provider's configured models)."""
        return frozenset()

    async def model_status(self, model: str) -> models_pb2.ModelStatusResponse | None:
        """What the provider knows of ``model`` now; None when it does not know it."""
        return None

    # -- models held in memory (local inference) ---------------------------------------------

    async def list_loaded(self) -> list[models_pb2.LoadedModel]:
        return []

    async def load_model(self, model: str, pin: bool) -> models_pb2.LoadedModel:
        raise self._unsupported("loading models", model)

    async def unload_model(self, model: str) -> bool:
        raise self._unsupported("unloading models", model)

    def download_model(
        self, model: str, revision: str
    ) -> AsyncIterator[admin_pb2.DownloadModelResponse]:
        raise self._unsupported("downloading models", model)


def chat_request_for(request: GenerateLike) -> chat_pb2.ChatRequest:
    """The one-user-message chat that stands in for a generation request."""
    source = request.options
    options = chat_pb2.ChatOptions(model=source.model, stop=list(source.stop_sequences))
    for name in _SHARED_OPTIONS:
        if source.HasField(name):
            value = getattr(source, name)
            if name == "reasoning":
                options.reasoning.CopyFrom(value)
            else:
                setattr(options, name, value)
    message = chat_pb2.Message(role=chat_pb2.ROLE_USER, content=request.prompt)
    return chat_pb2.ChatRequest(messages=[message], options=options)
