"""The gateway: validates a request, resolves its model to provider candidates, and
tries them in order until one answers, falling back only on errors that another
provider might not have (unavailable, rate limited, unauthenticated, unsupported).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing
from typing import TypeVar

from ratd import errors
from ratd.config import Config
from ratd.core.parameters import ParameterPolicy
from ratd.core.routing import Router
from ratd.core.validation import (
    validate_chat,
    validate_generate,
    validate_model,
    validate_pairs,
    validate_size,
    validate_texts,
)
from ratd.providers.base import ChatLike, GenerateLike, Provider
from ratatoskr.v1 import admin_pb2, chat_pb2, inference_pb2, models_pb2

log = logging.getLogger(__name__)

T = TypeVar("T")
E = TypeVar("E")

# Most items one batch request may carry.
MAX_BATCH_ITEMS = 2048


class Gateway:
    def __init__(self, config: Config, providers: Mapping[str, Provider]) -> None:
        self.config = config
        self.providers = dict(providers)
        claimed = {m: p.name for p in self.providers.values() for m in p.model_names()}
        self.router = Router(config, claimed)
        self.parameters = ParameterPolicy(config.validation.parameter_policy)
        self.max_bytes = config.server.max_request_bytes

    async def start(self) -> None:
        for provider in self.providers.values():
            await provider.start()

    async def close(self) -> None:
        for provider in self.providers.values():
            try:
                await provider.close()
            except Exception:
                log.exception("closing provider %s failed", provider.name)

    def capabilities(self) -> set[str]:
        """The routing capabilities some configured provider serves."""
        found: set[str] = set()
        for provider in self.providers.values():
            found |= provider.capabilities
        return found

    # -- fallback ---------------------------------------------------------------------------

    def _candidates(self, model: str, capability: str) -> list[tuple[Provider, str]]:
        return [
            (self.providers[c.provider], c.model)
            for c in self.router.resolve(model, capability)
            if c.provider in self.providers
        ]

    @staticmethod
    def _exhausted(
        capability: str, model: str, failures: list[tuple[str, errors.GatewayError]]
    ) -> errors.GatewayError:
        """The error to report once the chain is spent: the first provider's, naming all."""
        if not failures:
            return errors.NoProvider(
                f"no configured provider offers {capability} for model {model!r}", model=model
            )
        first = failures[0][1]
        first.metadata["tried"] = ",".join(name for name, _ in failures)
        if len(failures) > 1:
            detail = "; ".join(f"{name}: {err.message}" for name, err in failures)
            first.message = f"{first.message} (all providers failed: {detail})"
        return first

    async def _first_success(
        self,
        capability: str,
        model: str,
        call: Callable[[Provider, str], Awaitable[T]],
    ) -> T:
        failures: list[tuple[str, errors.GatewayError]] = []
        for provider, provider_model in self._candidates(model, capability):
            if capability not in provider.capabilities:
                continue
            try:
                return await call(provider, provider_model)
            except errors.GatewayError as err:
                failures.append((provider.name, err))
                if not err.fallback:
                    break
                log.debug("%s failed for %s (%s); trying the next provider", provider.name, model, err)
        raise self._exhausted(capability, model, failures)

    async def _first_stream(
        self,
        capability: str,
        model: str,
        open_stream: Callable[[Provider, str], AsyncIterator[E]],
    ) -> AsyncIterator[E]:
        """Stream from the first provider that produces an event; fall back only before it."""
        failures: list[tuple[str, errors.GatewayError]] = []
        for provider, provider_model in self._candidates(model, capability):
            if capability not in provider.capabilities:
                continue
            try:
                # Opening may refuse at once (an unsupported parameter under the error
                # policy, an operation the provider lacks): that is a failure like any other.
                opened = open_stream(provider, provider_model)
            except errors.GatewayError as err:
                failures.append((provider.name, err))
                if not err.fallback:
                    break
                log.debug(
                    "%s failed for %s (%s); trying the next provider", provider.name, model, err
                )
                continue
            async with aclosing(opened) as stream:  # type: ignore[type-var]
                try:
                    first = await anext(stream)
                except errors.GatewayError as err:
                    failures.append((provider.name, err))
                    if not err.fallback:
                        break
                    log.debug("%s failed for %s (%s); trying the next provider", provider.name, model, err)
                    continue
                except StopAsyncIteration:
                    failures.append(
                        (provider.name, errors.UpstreamProtocolError(
                            f"{provider.name}: empty stream", provider=provider.name, model=model
                        ))
                    )
                    continue
                yield first
                async for event in stream:
                    yield event
                return
        raise self._exhausted(capability, model, failures)

    # -- chat and generation ------------------------------------------------------------------

    async def chat(self, request: ChatLike) -> chat_pb2.ChatResponse:
        validate_chat(request, self.max_bytes)

        async def call(provider: Provider, model: str) -> chat_pb2.ChatResponse:
            return await provider.chat(self.parameters.apply(request, provider, model), model)

        return await self._first_success("chat", request.options.model, call)

    def chat_stream(self, request: ChatLike) -> AsyncIterator[chat_pb2.ChatStreamResponse]:
        validate_chat(request, self.max_bytes)
        return self._first_stream(
            "chat",
            request.options.model,
            lambda p, m: p.chat_stream(self.parameters.apply(request, p, m), m),
        )

    async def generate(self, request: GenerateLike) -> chat_pb2.GenerateResponse:
        validate_generate(request, self.max_bytes)

        async def call(provider: Provider, model: str) -> chat_pb2.GenerateResponse:
            return await provider.generate(self.parameters.apply(request, provider, model), model)

        return await self._first_success("generate", request.options.model, call)

    def generate_stream(self, request: GenerateLike) -> AsyncIterator[chat_pb2.GenerateStreamResponse]:
        validate_generate(request, self.max_bytes)
        return self._first_stream(
            "generate",
            request.options.model,
            lambda p, m: p.generate_stream(self.parameters.apply(request, p, m), m),
        )

    # -- inference --------------------------------------------------------------------------------

    async def embed_batch(
        self, request: inference_pb2.EmbedBatchRequest
    ) -> inference_pb2.EmbedBatchResponse:
        validate_model("model", request.model)
        texts = list(request.texts)
        validate_texts("texts", texts, self.max_bytes, MAX_BATCH_ITEMS)
        embeddings = await self._first_success("embed", request.model, lambda p, m: p.embed(texts, m))
        return inference_pb2.EmbedBatchResponse(embeddings=embeddings)

    async def embed(self, request: inference_pb2.EmbedRequest) -> inference_pb2.EmbedResponse:
        validate_model("model", request.model)
        validate_texts("text", [request.text], self.max_bytes, 1)
        (embedding,) = await self._first_success(
            "embed", request.model, lambda p, m: p.embed([request.text], m)
        )
        return inference_pb2.EmbedResponse(
            values=embedding.values, model=embedding.model, dimensions=embedding.dimensions
        )

    async def infer_nli_batch(
        self, request: inference_pb2.InferNliBatchRequest
    ) -> inference_pb2.InferNliBatchResponse:
        validate_model("model", request.model)
        pairs = list(request.pairs)
        validate_pairs(pairs, self.max_bytes, MAX_BATCH_ITEMS)
        results = await self._first_success("nli", request.model, lambda p, m: p.infer_nli(pairs, m))
        return inference_pb2.InferNliBatchResponse(results=results)

    async def infer_nli(self, request: inference_pb2.InferNliRequest) -> inference_pb2.InferNliResponse:
        validate_model("model", request.model)
        pair = inference_pb2.NliPair(premise=request.premise, hypothesis=request.hypothesis)
        validate_pairs([pair], self.max_bytes, 1)
        (result,) = await self._first_success("nli", request.model, lambda p, m: p.infer_nli([pair], m))
        return inference_pb2.InferNliResponse(
            entailment=result.entailment,
            contradiction=result.contradiction,
            neutral=result.neutral,
            label=result.label,
        )

    async def classify_zero_shot(
        self, request: inference_pb2.ClassifyZeroShotRequest
    ) -> inference_pb2.ClassifyZeroShotResponse:
        validate_model("model", request.model)
        validate_texts("text", [request.text], self.max_bytes, 1)
        validate_texts("labels", list(request.labels), self.max_bytes, 256)
        return await self._first_success(
            "classify", request.model, lambda p, m: p.classify_zero_shot(request, m)
        )

    async def classify_stance(
        self, request: inference_pb2.ClassifyStanceRequest
    ) -> inference_pb2.ClassifyStanceResponse:
        validate_model("model", request.model)
        validate_texts("text", [request.text], self.max_bytes, 1)
        validate_texts("target", [request.target], self.max_bytes, 1)
        return await self._first_success(
            "stance", request.model, lambda p, m: p.classify_stance(request, m)
        )

    async def count_tokens(
        self, request: inference_pb2.CountTokensRequest
    ) -> inference_pb2.CountTokensResponse:
        validate_model("model", request.model)
        validate_size("text", request.text, self.max_bytes)
        return await self._first_success(
            "tokens", request.model, lambda p, m: p.count_tokens(request.text, m)
        )

    async def tokenize(self, request: inference_pb2.TokenizeRequest) -> inference_pb2.TokenizeResponse:
        validate_model("model", request.model)
        validate_size("text", request.text, self.max_bytes)
        return await self._first_success(
            "tokens", request.model, lambda p, m: p.tokenize(request.text, m)
        )

    # -- models ----------------------------------------------------------------------------------

    async def model_status(self, model: str) -> models_pb2.ModelStatusResponse:
        """The status the first provider that knows ``model`` reports."""
        validate_model("model", model)
        for capability in ("chat", "embed", "nli", "classify", "tokens"):
            try:
                candidates = self._candidates(model, capability)
            except errors.GatewayError:
                continue
            for provider, provider_model in candidates:
                status = await provider.model_status(provider_model)
                if status is not None:
                    return status
        raise errors.ModelNotFound(f"no provider knows the model {model!r}", model=model)

    def _local(self) -> Provider:
        local = self.providers.get("local")
        if local is None:
            raise errors.NotImplementedYet("no local model provider is configured ([providers.local])")
        return local

    async def list_loaded(self) -> list[models_pb2.LoadedModel]:
        loaded: list[models_pb2.LoadedModel] = []
        for provider in self.providers.values():
            loaded.extend(await provider.list_loaded())
        return loaded

    async def load_model(self, model: str, pin: bool) -> models_pb2.LoadedModel:
        validate_model("model", model)
        return await self._local().load_model(model, pin)

    async def unload_model(self, model: str) -> bool:
        validate_model("model", model)
        return await self._local().unload_model(model)

    def download_model(self, model: str, revision: str) -> AsyncIterator[admin_pb2.DownloadModelResponse]:
        validate_model("model", model)
        return self._local().download_model(model, revision)
