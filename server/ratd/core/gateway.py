"""The gateway: validates a request, resolves its model to provider candidates, and
tries them in order until one answers, falling back only on errors that another
provider might not have (unavailable, rate limited, unauthenticated, unsupported).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import AbstractContextManager, aclosing
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from google.protobuf.message import Message as ProtoMessage

from ratatoskr.v1 import admin_pb2, chat_pb2, inference_pb2, media_pb2, models_pb2, realtime_pb2
from ratd import errors, tracing
from ratd.config import Config
from ratd.core import access, media, realtime
from ratd.core.cache import ResponseCache, cache_key
from ratd.core.calls import CallInfo, current
from ratd.core.catalog import Catalog
from ratd.core.governance import Governor, Reservation
from ratd.core.interceptors import load_chain, streaming, unary
from ratd.core.latency import LatencyTable, latency_table
from ratd.core.llm_judge import LlmJudge
from ratd.core.parameters import ParameterPolicy
from ratd.core.retirement import retired_presets, today_of
from ratd.core.retry import Retrier
from ratd.core.routing import PRESET_PREFIX, Router
from ratd.core.validation import (
    embed_dimensions,
    validate_chat,
    validate_generate,
    validate_model,
    validate_pairs,
    validate_size,
    validate_texts,
)
from ratd.metrics import FALLBACKS, SPEND, TOKENS, child
from ratd.providers.base import ChatLike, GenerateLike, Provider
from ratd.registry import Presets, Registry, cost_at
from ratd.state import StateBackend, build_state

log = logging.getLogger(__name__)

T = TypeVar("T")
E = TypeVar("E")
R = TypeVar("R", bound=ProtoMessage)
Item = TypeVar("Item")
Result = TypeVar("Result", bound=ProtoMessage)
Cached = TypeVar("Cached", bound=ProtoMessage)
Answer = TypeVar("Answer", chat_pb2.ChatResponse, chat_pb2.GenerateResponse)
# A media answer that carries usage (priced by _costed).
Costed = TypeVar("Costed", media_pb2.GenerateImageResponse, media_pb2.TranscribeResponse)
Event = TypeVar("Event", chat_pb2.ChatStreamResponse, chat_pb2.GenerateStreamResponse)

# Most items one batch request may carry.
MAX_BATCH_ITEMS = 2048
# Failures of NLI, classification and stance that mean no NLI model can answer (none
# routed, missing, not loadable, over its budget, its provider down or refusing ratd's
# key): the ones the LLM fallback stands in for. Not the request's own faults, a tenant's
# allow-list, or ratd shutting down.
_NO_NLI_MODEL = (
    errors.NoProvider,
    errors.ModelNotFound,
    errors.ProviderUnavailable,
    errors.RateLimited,
    errors.AuthenticationFailed,
    errors.NotImplementedYet,
)
_NOT_FOR_THE_LLM = (errors.ShuttingDown, errors.PresetNotFound)
# Model names remembered for logging (they are the callers').
_MAX_REMEMBERED_NAMES = 1024


def _preset_table(seed_presets: Mapping[str, Any], config: Config) -> dict[str, dict[str, Any]]:
    """The seed's presets with the config's ``[presets.<tier>.<capability>]`` on top."""
    table = {tier: dict(caps) for tier, caps in seed_presets.items()}
    for tier, caps in config.presets.items():
        for capability, preset in caps.items():
            table.setdefault(tier, {})[capability] = preset.as_seed_entry()
    return table


class _Opened:
    """What the fallback chain hands a stream: the provider that answered, its model
    name, and its tracing span, still open (``scope`` is the span's context manager)."""

    __slots__ = ("model", "provider", "scope", "span")

    provider: Provider
    model: str
    scope: AbstractContextManager[Any]
    span: Any


def _open_span(
    capability: str, provider: Provider, model: str, options: ProtoMessage | None
) -> tuple[AbstractContextManager[Any], Any]:
    """A provider's span, entered: its context manager and the span (``NO_SPAN`` and
    None while tracing is off, without a call more)."""
    if tracing.state.tracer is None:
        return tracing.NO_SPAN, None
    scope = tracing.provider_span(capability, provider.name, provider.kind, model, options)
    return scope, scope.__enter__()


def _close_span(scope: AbstractContextManager[Any], span: Any, info: CallInfo | None) -> None:
    """Close a provider's span once its answer is delivered, with the usage on it."""
    if scope is tracing.NO_SPAN:
        return
    if span is not None and info is not None and info.usage is not None:
        tracing.record_usage(span, info.usage)
    scope.__exit__(None, None, None)


# How many (model, capability) routes a gateway remembers.
_MAX_ROUTES = 4096


class Gateway:
    def __init__(
        self,
        config: Config,
        providers: Mapping[str, Provider],
        state: StateBackend | None = None,
    ) -> None:
        """``state``: the governance backend, shared across reloads by the daemon (so that
        a reload keeps the counters); without it the gateway builds its own from
        ``[state]`` and closes it with itself."""
        self.config = config
        self.providers = dict(providers)
        kinds = {name: conf.kind for name, conf in config.providers.items()}
        kinds.update({name: name for name in self.providers if name not in kinds})
        settings = config.registry
        self.registry = Registry(
            kinds,
            cache_path=Path(settings.cache_path).expanduser() if settings.cache_path else None,
            refresh_secs=settings.refresh_secs,
            fetch_timeout_secs=settings.fetch_timeout_secs,
            rejection_ttl_secs=settings.rejection_ttl_secs,
        )
        self.presets = Presets(_preset_table(self.registry.seed.presets, config))
        today = today_of(settings.today)
        for stale in retired_presets(self.presets, self.registry, today()):
            log.warning("preset %s names a model past its shutdown date", stale)
        claimed = {m: p.name for p in self.providers.values() for m in p.model_names()}
        self.router = Router(config, claimed)
        # _candidates' answers for callers without an allow-list (bounded), unless the
        # order depends on the request (the cheapest strategy).
        self._routes: dict[tuple[str, str], list[tuple[Provider, str]]] = {}
        self._cheapest = config.routing.strategy == "cheapest"
        self.parameters = ParameterPolicy(config.validation.parameter_policy, self.registry)
        self.catalog = Catalog(self.registry, self.presets, self.router, self.providers, today)
        self.retry = Retrier(config.retry)
        self.cache = ResponseCache(config.cache)
        self.max_bytes = config.server.max_request_bytes
        # A chat model standing in for NLI models ([routing] nli_llm_fallback; opt-in),
        # and the NLI model names it stood in for (logged at info level once each).
        fallback = config.routing.nli_llm_fallback
        self.judge = LlmJudge(fallback, self.chat) if fallback else None
        self._judged: set[str] = set()
        # Measured latency per (provider, model), kept only under strategy "latency".
        self.latency: LatencyTable | None = None
        if config.routing.strategy == "latency":
            self.latency = latency_table(config.routing)
        # [interceptors]: built per gateway, so a reload builds them afresh.
        self.interceptors = load_chain(config.interceptors)
        self._owns_state = state is None
        self.state = build_state(config) if state is None else state
        self.governor = Governor(config, self.state, self.registry)

    async def start(self) -> None:
        for provider in self.providers.values():
            await provider.start()
        if self.config.registry.live:
            self.registry.start(self.providers)
        else:
            self.registry.load_cache()
        # Models described from memory (the local catalog) are known from the start,
        # live refreshes or not.
        for name, provider in self.providers.items():
            if provider.describes_offline:
                await self.registry.refresh_provider(name, provider)

    async def close(self, keep: Collection[object] = ()) -> None:
        """Close the registry and every provider but those in ``keep`` (the ones a
        reloaded gateway took over)."""
        await self.registry.stop()
        await self.interceptors.close()
        if self._owns_state:
            await self.state.close()
        for provider in self.providers.values():
            if any(provider is kept for kept in keep):
                continue
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

    # -- candidates and fallback ----------------------------------------------------------------

    def _candidates(
        self,
        model: str,
        capability: str,
        options: ProtoMessage | None = None,
        info: CallInfo | None = None,
    ) -> list[tuple[Provider, str]]:
        """The providers to try for ``model``, in order: those routing names that are
        configured and, for a caller with a model allow-list, that it may use."""
        tenant = info.tenant if info is not None else None
        if tenant is not None and tenant.models is None:
            tenant = None  # no allow-list: every model
        if tenant is None and not self._cheapest:
            found = self._routes.get((model, capability))
            if found is not None:  # routing is fixed for the gateway's life: remembered
                return found
        try:
            routed = self.router.resolve(model, capability)
        except errors.NoProvider:
            if tenant is not None and not tenant.may_use(model):
                raise access.refusal(tenant, model, ()) from None
            raise
        found = [
            (self.providers[c.provider], c.model) for c in routed if c.provider in self.providers
        ]
        if tenant is not None:
            allowed = [(p, m) for p, m in found if access.permits(tenant, model, p.name, m)]
            if not allowed and (found or not tenant.may_use(model)):
                raise access.refusal(tenant, model, (f"{p.name}:{m}" for p, m in found))
            found = allowed
        if self._cheapest:
            return self._cheapest_first(found, options)
        if tenant is None:
            if len(self._routes) >= _MAX_ROUTES:
                self._routes.clear()
            self._routes[model, capability] = found
        return found

    def _cheapest_first(
        self, candidates: list[tuple[Provider, str]], options: ProtoMessage | None
    ) -> list[tuple[Provider, str]]:
        """Providers that take every parameter the request sets come first, then the
        cheapest by the registry's prices; unknown prices last, in chain order."""

        def key(item: tuple[int, tuple[Provider, str]]) -> tuple[bool, bool, float, int]:
            index, (provider, model) = item
            try:
                conflicts = bool(options and self.parameters.unsupported(options, provider, model))
            except errors.InvalidInput:
                conflicts = True
            price = self.registry.price(provider.name, model)
            return (conflicts, price is None, price or 0.0, index)

        return [c for _, c in sorted(enumerate(candidates), key=key)]

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

    def _moving_on(self, provider: Provider, capability: str, err: errors.GatewayError) -> None:
        child(FALLBACKS, provider.name, capability).inc()
        log.debug("%s failed (%s); trying the next provider", provider.name, err)

    async def _first_success(
        self,
        capability: str,
        model: str,
        unit: Callable[[Provider, str], Awaitable[T]],
        info: CallInfo | None,
        options: ProtoMessage | None = None,
        *,
        opened: _Opened | None = None,
    ) -> T:
        """The fallback chain, for unary calls and streams alike: ``unit`` from the first
        provider that gives it, each provider retried while that may help. The unit is
        the whole answer of a unary call, and the opening of a stream up to its first
        event (after which nothing may be retried: the caller has begun to receive it).

        The provider's tracing span is closed here once the unit succeeds, unless
        ``opened`` is given (a stream): then the provider, its model name and its span,
        still open, are left in it, for the stream to close at its end. (The span is
        entered and left by hand rather than with ``with``, so that it can outlive this
        call; and no generator-based context manager runs on this path, which every
        call takes.)"""
        failures: list[tuple[str, errors.GatewayError]] = []
        candidates = self._candidates(model, capability, options, info)
        if self.latency is not None:
            # Only those that serve the capability: a probe must reach its provider.
            serving = [c for c in candidates if capability in c[0].capabilities]
            candidates = self.latency.order(serving, key=lambda c: (c[0].name, c[1]))
        for provider, provider_model in candidates:
            if capability not in provider.capabilities:
                continue
            try:
                self.catalog.retirement.check(provider.name, provider_model)
            except errors.ModelRetired as err:
                failures.append((provider.name, err))
                continue
            if info is not None:
                info.model = info.model or model
                info.attempt(provider.name)
            scope, span = _open_span(capability, provider, provider_model, options)
            try:
                result = await self._measured(provider, provider_model, unit, info)
            except errors.GatewayError as err:
                tracing.failed(span, err)
                scope.__exit__(None, None, None)
                failures.append((provider.name, err))
                if not err.fallback:
                    break
                self._moving_on(provider, capability, err)
                continue
            except BaseException as exc:
                scope.__exit__(type(exc), exc, exc.__traceback__)
                raise
            if info is not None:
                info.provider = provider.name
            if opened is None:
                _close_span(scope, span, info)
            else:
                opened.provider, opened.model, opened.scope, opened.span = (
                    provider,
                    provider_model,
                    scope,
                    span,
                )
            return result
        raise self._exhausted(capability, model, failures)

    def _measured(
        self,
        provider: Provider,
        model: str,
        unit: Callable[[Provider, str], Awaitable[T]],
        info: CallInfo | None,
    ) -> Awaitable[T]:
        """``unit`` of one provider, retried while that may help; under the latency
        strategy, its time (retries included: what the caller waited) or its failure
        recorded for that (provider, model). A refusal of the request itself (its own
        4xx, a parameter the model does not take) says nothing of the provider's speed
        and is not. (Without the latency strategy, the retrier's own coroutine: one frame
        less on every call.)"""
        if self.latency is None:
            return self.retry.run(partial(unit, provider, model), provider.name, info)
        return self._timed(self.latency, provider, model, unit, info)

    async def _timed(
        self,
        latency: LatencyTable,
        provider: Provider,
        model: str,
        unit: Callable[[Provider, str], Awaitable[T]],
        info: CallInfo | None,
    ) -> T:
        started = latency.clock()
        try:
            result = await self.retry.run(partial(unit, provider, model), provider.name, info)
        except errors.GatewayError as err:
            if err.fallback and not isinstance(err, errors.InvalidInput):
                latency.failed(provider.name, model)
            raise
        latency.observe(provider.name, model, latency.clock() - started)
        return result

    async def _first_stream(
        self,
        capability: str,
        request: R,
        open_stream: Callable[[Provider, str, R], AsyncIterator[Event]],
        info: CallInfo | None,
    ) -> AsyncIterator[Event]:
        """Stream from the first provider that produces an event, counting the usage it
        reports. The provider's span stays open until the stream ends."""
        options = request.options  # type: ignore[attr-defined]

        def unit(provider: Provider, model: str) -> Awaitable[tuple[Event, AsyncIterator[Event]]]:
            return self._prepared(
                provider,
                model,
                request,
                lambda r: self._opened(open_stream(provider, model, r), provider, model),
                info,
            )

        held: Reservation | None = None
        if info is not None and info.tenant is not None:
            held = await self._admit(capability, request, info)
        opened = _Opened()
        try:
            event, stream = await self._first_success(
                capability, options.model, unit, info, options, opened=opened
            )
        except BaseException as exc:
            if held is not None and info is not None:  # nothing streamed: refund
                keep = not isinstance(exc, errors.GatewayError)
                self.governor.settle(held, info, None, keep=keep)
            raise
        provider, model, scope = opened.provider, opened.model, opened.scope
        try:
            async with aclosing(stream):  # type: ignore[type-var]
                if event.WhichOneof("event") == "usage":
                    self._account(provider, model, event.usage, info)
                yield event
                async for event in stream:
                    if event.WhichOneof("event") == "usage":
                        self._account(provider, model, event.usage, info)
                    yield event
        except BaseException as exc:
            scope.__exit__(type(exc), exc, exc.__traceback__)
            raise
        finally:
            # Ended, failed, cancelled or cut: settle to the usage the stream reported, or
            # (none reported) keep the worst case, which the upstream may have charged.
            if held is not None and info is not None:
                self.governor.settle(held, info, info.usage, keep=True)
        _close_span(scope, opened.span, info)

    @staticmethod
    async def _opened(
        stream: AsyncIterator[E], provider: Provider, model: str
    ) -> tuple[E, AsyncIterator[E]]:
        """A stream with its first event read (closed if that fails)."""
        try:
            first = await anext(stream)
        except StopAsyncIteration:
            raise errors.UpstreamProtocolError(
                f"{provider.name}: empty stream", provider=provider.name, model=model
            ) from None
        except BaseException:
            await stream.aclose()  # type: ignore[attr-defined]
            raise
        return first, stream

    # -- one provider: parameters, refusals, cost -------------------------------------------------

    def _with_preset(self, request: R) -> R:
        """The request with a preset model name replaced and its parameters filled in."""
        options = request.options  # type: ignore[attr-defined]
        if not options.model.startswith(PRESET_PREFIX):  # most names: no lookup
            return request
        preset = self.presets.resolve(options.model)
        if preset is None:
            return request
        resolved = type(request)()
        resolved.CopyFrom(request)
        resolved.options.model = preset.model  # type: ignore[attr-defined]
        preset.fill(resolved.options)  # type: ignore[attr-defined]
        return resolved

    def _account(
        self, provider: Provider, model: str, usage: chat_pb2.Usage, info: CallInfo | None
    ) -> None:
        """Fill in the cost of ``usage`` (unless the provider reported it) and count the
        tokens and the spend."""
        name = provider.name
        prompt, completion = usage.prompt_tokens, usage.completion_tokens
        child(TOKENS, name, "prompt").inc(prompt)
        child(TOKENS, name, "completion").inc(completion)
        if info is not None:
            info.usage = usage
        known, rates = self.registry.priced(name, model)
        if usage.HasField("cost_usd"):
            cost = usage.cost_usd
        elif rates is None:
            return
        else:
            cost = usage.cost_usd = cost_at(rates, prompt, completion)
        child(SPEND, name, model if known else "other").inc(cost)

    async def _prepared(
        self,
        provider: Provider,
        model: str,
        request: R,
        send: Callable[[R], Awaitable[T]],
        info: CallInfo | None,
        *,
        priced: bool = False,
    ) -> T:
        """``send`` of ``request`` with its parameters fitted to the model; a refused
        parameter learned (and, under ``warn``, the request sent once more without it);
        the wait on the upstream timed. ``send`` is the whole unary call (``priced``: its
        answer's cost added), or the opening of a stream up to its first event (a refusal
        can only come before it)."""
        prepared = self.parameters.apply(request, provider, model)
        started = time.perf_counter()
        try:
            try:
                answer = await send(prepared)
            except errors.UpstreamInvalidRequest as err:
                if not self.parameters.learn(err, prepared, provider, model):
                    raise
                answer = await send(self.parameters.apply(request, provider, model))
        finally:
            if info is not None:
                info.upstream += time.perf_counter() - started
        if priced and answer.HasField("usage"):  # type: ignore[attr-defined]
            self._account(provider, model, answer.usage, info)  # type: ignore[attr-defined]
        return answer

    # -- governance (core.governance) --------------------------------------------------------

    async def _admit(self, capability: str, request: R, info: CallInfo) -> Reservation | None:
        """The caller's reservation for ``request``, priced over the providers that may
        serve it (refusals of the allow-list come first, as without governance)."""
        options = request.options  # type: ignore[attr-defined]
        candidates = self._candidates(options.model, capability, options, info)
        return await self.governor.admit(
            info,
            request,  # type: ignore[arg-type]
            [(p.name, m) for p, m in candidates if capability in p.capabilities],
        )

    async def _governed(
        self,
        capability: str,
        request: R,
        info: CallInfo,
        run: Callable[[], Awaitable[Answer]],
    ) -> Answer:
        """``run()`` between a reservation and its settlement. A provider's error refunds
        it; a cancellation or timeout (the upstream may have charged) keeps the worst case;
        a cached answer costs nothing."""
        held = await self._admit(capability, request, info)
        try:
            answer = await run()
        except errors.GatewayError:
            self.governor.settle(held, info, None)
            raise
        except BaseException:
            self.governor.settle(held, info, None, keep=True)
            raise
        if info.cache == "hit":
            self.governor.settle(held, info, None)
        else:
            usage = answer.usage if answer.HasField("usage") else None
            self.governor.settle(held, info, usage, keep=True)
        return answer

    async def _counted(self, info: CallInfo | None, run: Callable[[], Awaitable[T]]) -> T:
        """An inference call other than chat and generation: it counts against the
        tenant's request limits and in its usage (requests; no tokens or cost yet)."""
        if info is None or info.tenant is None:
            return await run()
        held = await self.governor.admit(info, None)
        try:
            return await run()
        finally:
            self.governor.settle(held, info, None)

    # -- chat and generation ------------------------------------------------------------------

    @unary("Chat")
    async def chat(self, request: ChatLike) -> chat_pb2.ChatResponse:
        kinds = self._checked_chat(request)
        request = self._with_preset(request)
        model = request.options.model
        info = current()

        def call(provider: Provider, model: str) -> Awaitable[chat_pb2.ChatResponse]:
            if kinds:
                media.check_readable(request, kinds, provider, model)
            return self._prepared(
                provider, model, request, lambda r: provider.chat(r, model), info, priced=True
            )

        options = request.options

        def run() -> Awaitable[chat_pb2.ChatResponse]:
            if (
                self.cache.config.chat
                and options.HasField("temperature")
                and options.temperature == 0
            ):
                return self._whole("chat", model, request, call, chat_pb2.ChatResponse, info=info)
            return self._first_success("chat", model, call, info, options)

        if info is None or info.tenant is None:
            return await run()
        return await self._governed("chat", request, info, run)

    def realtime(
        self, requests: AsyncIterator[realtime_pb2.RealtimeRequest]
    ) -> AsyncIterator[realtime_pb2.RealtimeResponse]:
        """A realtime session (``ratd.core.realtime``): opened with the first provider
        of the model's route that serves realtime, then relayed both ways."""
        return realtime.session(self, requests, current())

    @streaming("ChatStream")
    def chat_stream(self, request: ChatLike) -> AsyncIterator[chat_pb2.ChatStreamResponse]:
        kinds = self._checked_chat(request)

        def open_stream(
            provider: Provider, model: str, r: ChatLike
        ) -> AsyncIterator[chat_pb2.ChatStreamResponse]:
            if kinds:
                media.check_readable(r, kinds, provider, model)
            return provider.chat_stream(r, model)

        return self._first_stream("chat", self._with_preset(request), open_stream, current())

    def _checked_chat(self, request: ChatLike) -> frozenset[str]:
        """Validate a chat request and its media parts; the kinds of those it has (most
        have none: then no provider need look for them)."""
        kinds = validate_chat(request, self.max_bytes)
        if kinds:
            media.check_parts(request, self.config.media)
        return kinds

    @unary("Generate")
    async def generate(self, request: GenerateLike) -> chat_pb2.GenerateResponse:
        validate_generate(request, self.max_bytes)
        request = self._with_preset(request)
        info = current()

        def call(provider: Provider, model: str) -> Awaitable[chat_pb2.GenerateResponse]:
            return self._prepared(
                provider, model, request, lambda r: provider.generate(r, model), info, priced=True
            )

        options = request.options
        if info is None or info.tenant is None:
            return await self._first_success("generate", options.model, call, info, options)
        return await self._governed(
            "generate",
            request,
            info,
            lambda: self._first_success("generate", options.model, call, info, options),
        )

    @streaming("GenerateStream")
    def generate_stream(
        self, request: GenerateLike
    ) -> AsyncIterator[chat_pb2.GenerateStreamResponse]:
        validate_generate(request, self.max_bytes)
        return self._first_stream(
            "generate",
            self._with_preset(request),
            lambda provider, model, r: provider.generate_stream(r, model),
            current(),
        )

    # -- inference --------------------------------------------------------------------------------

    async def _per_item(
        self,
        capability: str,
        model: str,
        items: list[Item],
        *,
        key: Callable[[Item], bytes],
        compute: Callable[[Provider, str, list[Item]], Awaitable[Sequence[Result]]],
        cls: type[Result],
        info: CallInfo | None,
    ) -> list[Result]:
        """Results for ``items``, each from the cache when it is there; the rest computed
        in one call through the fallback chain, then cached."""
        self._candidates(model, capability, info=info)  # a cached answer is no way round
        keys = [key(item) for item in items]
        found: list[Result | None] = [self.cache.get(capability, k, cls) for k in keys]
        missing = [i for i, result in enumerate(found) if result is None]
        if missing:
            todo = [items[i] for i in missing]
            computed = await self._first_success(
                capability, model, lambda p, m: compute(p, m, todo), info
            )
            if len(computed) != len(todo):
                raise errors.UpstreamProtocolError(
                    f"asked for {len(todo)} results, got {len(computed)}", model=model
                )
            for i, result in zip(missing, computed, strict=True):
                found[i] = result
                self.cache.put(keys[i], result)
        elif info is not None:
            info.cache, info.provider, info.model = "hit", "cache", model
        return [result for result in found if result is not None]

    async def _whole(
        self,
        capability: str,
        model: str,
        request: ProtoMessage,
        compute: Callable[[Provider, str], Awaitable[Cached]],
        cls: type[Cached],
        *,
        info: CallInfo | None,
    ) -> Cached:
        """One answer, from the cache when the same request was answered before."""
        self._candidates(model, capability, info=info)  # a cached answer is no way round
        key = cache_key(capability, model, request.SerializeToString(deterministic=True))
        cached = self.cache.get(capability, key, cls)
        if cached is not None:
            if info is not None:
                info.cache, info.provider, info.model = "hit", "cache", model
            return cached
        answer = await self._first_success(capability, model, compute, info)
        self.cache.put(key, answer)
        return answer

    async def _embeddings(
        self, model: str, texts: list[str], dimensions: int | None
    ) -> list[inference_pb2.Embedding]:
        # The length asked for is part of the answer: "" (native) never equals a number.
        length = "" if dimensions is None else str(dimensions)
        info = current()
        return await self._counted(
            info,
            lambda: self._per_item(
                "embed",
                model,
                texts,
                key=lambda text: cache_key("embed", model, text, length),
                compute=lambda p, m, todo: p.embed(todo, m, dimensions),
                cls=inference_pb2.Embedding,
                info=info,
            ),
        )

    @unary("EmbedBatch")
    async def embed_batch(
        self, request: inference_pb2.EmbedBatchRequest
    ) -> inference_pb2.EmbedBatchResponse:
        validate_model("model", request.model)
        model = self.catalog.resolve_name(request.model)
        texts = list(request.texts)
        validate_texts("texts", texts, self.max_bytes, MAX_BATCH_ITEMS)
        dimensions = embed_dimensions(request)
        embeddings = await self._embeddings(model, texts, dimensions)
        return inference_pb2.EmbedBatchResponse(embeddings=embeddings)

    @unary("Embed")
    async def embed(self, request: inference_pb2.EmbedRequest) -> inference_pb2.EmbedResponse:
        validate_model("model", request.model)
        model = self.catalog.resolve_name(request.model)
        validate_texts("text", [request.text], self.max_bytes, 1)
        dimensions = embed_dimensions(request)
        (embedding,) = await self._embeddings(model, [request.text], dimensions)
        return inference_pb2.EmbedResponse(
            values=embedding.values, model=embedding.model, dimensions=embedding.dimensions
        )

    async def _or_judged(
        self,
        model: str,
        answer: Awaitable[T],
        judged: Callable[[LlmJudge], Awaitable[T]],
        info: CallInfo | None,
    ) -> T:
        """``answer`` of an NLI model; when none can give it and ``nli_llm_fallback`` is
        set, the chat model's judgement instead (never cached: an NLI model that comes
        back answers for itself)."""
        try:
            return await answer
        except _NO_NLI_MODEL as err:
            judge = self.judge
            if judge is None or isinstance(err, _NOT_FOR_THE_LLM):
                raise
            level = logging.DEBUG if model in self._judged else logging.INFO
            if len(self._judged) < _MAX_REMEMBERED_NAMES:
                self._judged.add(model)
            log.log(level, "no NLI model for %r (%s); asking %s", model, err.message, judge.model)
            if info is not None:
                info.model = info.model or model
            return await judged(judge)

    async def _nli(
        self, model: str, pairs: list[inference_pb2.NliPair]
    ) -> list[inference_pb2.NliResult]:
        info = current()
        answer = partial(
            self._per_item,
            "nli",
            model,
            pairs,
            key=lambda pair: cache_key("nli", model, pair.premise, pair.hypothesis),
            compute=lambda p, m, todo: p.infer_nli(todo, m),
            cls=inference_pb2.NliResult,
            info=info,
        )
        return await self._counted(
            info, lambda: self._or_judged(model, answer(), lambda j: j.nli(pairs, info), info)
        )

    @unary("InferNliBatch")
    async def infer_nli_batch(
        self, request: inference_pb2.InferNliBatchRequest
    ) -> inference_pb2.InferNliBatchResponse:
        validate_model("model", request.model)
        model = self.catalog.resolve_name(request.model)
        pairs = list(request.pairs)
        validate_pairs(pairs, self.max_bytes, MAX_BATCH_ITEMS)
        return inference_pb2.InferNliBatchResponse(results=await self._nli(model, pairs))

    @unary("InferNli")
    async def infer_nli(
        self, request: inference_pb2.InferNliRequest
    ) -> inference_pb2.InferNliResponse:
        validate_model("model", request.model)
        model = self.catalog.resolve_name(request.model)
        pair = inference_pb2.NliPair(premise=request.premise, hypothesis=request.hypothesis)
        validate_pairs([pair], self.max_bytes, 1)
        (result,) = await self._nli(model, [pair])
        return inference_pb2.InferNliResponse(
            entailment=result.entailment,
            contradiction=result.contradiction,
            neutral=result.neutral,
            label=result.label,
        )

    @unary("ClassifyZeroShot")
    async def classify_zero_shot(
        self, request: inference_pb2.ClassifyZeroShotRequest
    ) -> inference_pb2.ClassifyZeroShotResponse:
        validate_model("model", request.model)
        model = self.catalog.resolve_name(request.model)
        validate_texts("text", [request.text], self.max_bytes, 1)
        validate_texts("labels", list(request.labels), self.max_bytes, 256)
        info = current()
        answer = partial(
            self._whole,
            "classify",
            model,
            request,
            lambda p, m: p.classify_zero_shot(request, m),
            inference_pb2.ClassifyZeroShotResponse,
            info=info,
        )
        return await self._counted(
            info,
            lambda: self._or_judged(model, answer(), lambda j: j.zero_shot(request, info), info),
        )

    @unary("ClassifyStance")
    async def classify_stance(
        self, request: inference_pb2.ClassifyStanceRequest
    ) -> inference_pb2.ClassifyStanceResponse:
        validate_model("model", request.model)
        model = self.catalog.resolve_name(request.model)
        validate_texts("text", [request.text], self.max_bytes, 1)
        validate_texts("target", [request.target], self.max_bytes, 1)
        info = current()
        answer = partial(
            self._whole,
            "stance",
            model,
            request,
            lambda p, m: p.classify_stance(request, m),
            inference_pb2.ClassifyStanceResponse,
            info=info,
        )
        return await self._counted(
            info, lambda: self._or_judged(model, answer(), lambda j: j.stance(request, info), info)
        )

    @unary("CountTokens")
    async def count_tokens(
        self, request: inference_pb2.CountTokensRequest
    ) -> inference_pb2.CountTokensResponse:
        validate_model("model", request.model)
        model = self.catalog.resolve_name(request.model)
        validate_size("text", request.text, self.max_bytes)
        info = current()
        return await self._counted(
            info,
            lambda: self._first_success(
                "tokens", model, lambda p, m: p.count_tokens(request.text, m), info
            ),
        )

    @unary("Tokenize")
    async def tokenize(
        self, request: inference_pb2.TokenizeRequest
    ) -> inference_pb2.TokenizeResponse:
        validate_model("model", request.model)
        model = self.catalog.resolve_name(request.model)
        validate_size("text", request.text, self.max_bytes)
        info = current()
        return await self._counted(
            info,
            lambda: self._first_success(
                "tokens", model, lambda p, m: p.tokenize(request.text, m), info
            ),
        )

    # -- media ------------------------------------------------------------------------------------

    def _media_model(self, model: str) -> str:
        validate_model("model", model)
        return self.catalog.resolve_name(model)

    async def generate_image(
        self, request: media_pb2.GenerateImageRequest
    ) -> media_pb2.GenerateImageResponse:
        model = self._media_model(request.model)
        media.check_image_request(request, self.config.media)
        return await self._costed(
            "image", model, lambda provider, name: provider.generate_image(request, name)
        )

    async def transcribe(
        self, request: media_pb2.TranscribeRequest
    ) -> media_pb2.TranscribeResponse:
        model = self._media_model(request.model)
        media.check_transcribe(request, self.config.media)
        return await self._costed(
            "transcribe", model, lambda provider, name: provider.transcribe(request, name)
        )

    def _costed(
        self, capability: str, model: str, send: Callable[[Provider, str], Awaitable[Costed]]
    ) -> Awaitable[Costed]:
        """The fallback chain over ``send``, each answer's usage priced and counted."""
        info = current()

        async def call(provider: Provider, name: str) -> Costed:
            answer = await send(provider, name)
            if answer.HasField("usage"):
                self._account(provider, name, answer.usage, info)
            return answer

        return self._first_success(capability, model, call, info)

    async def synthesize(
        self, request: media_pb2.SynthesizeRequest
    ) -> AsyncIterator[media_pb2.SynthesizeResponse]:
        """Audio chunks from the first provider that sends one; retries and fallback
        only before it (the caller has begun to hear the answer after)."""
        model = self._media_model(request.model)
        media.check_synthesize(request, self.config.media)
        info = current()

        def unit(
            provider: Provider, name: str
        ) -> Awaitable[
            tuple[media_pb2.SynthesizeResponse, AsyncIterator[media_pb2.SynthesizeResponse]]
        ]:
            return self._opened(provider.synthesize(request, name), provider, name)

        opened = _Opened()
        chunk, stream = await self._first_success("speech", model, unit, info, opened=opened)
        provider, name, scope = opened.provider, opened.model, opened.scope
        try:
            async with aclosing(stream):  # type: ignore[type-var]
                yield chunk
                async for chunk in stream:
                    if chunk.HasField("usage"):
                        self._account(provider, name, chunk.usage, info)
                    yield chunk
        except BaseException as exc:
            scope.__exit__(type(exc), exc, exc.__traceback__)
            raise
        _close_span(scope, opened.span, info)

    # -- models ----------------------------------------------------------------------------------

    def _local(self) -> Provider:
        local = self.providers.get("local")
        if local is None:
            raise errors.NotImplementedYet(
                "no local model provider is configured ([providers.local])"
            )
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

    def download_model(
        self, model: str, revision: str
    ) -> AsyncIterator[admin_pb2.DownloadModelResponse]:
        validate_model("model", model)
        return self._local().download_model(model, revision)
