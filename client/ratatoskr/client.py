"""The asynchronous client of ratd: ``ServiceClient``.

Methods are named as in the upstream ``ModelGateway`` trait, take plain Python values
where that is natural, and return the generated ``ratatoskr.v1`` messages. A failed call
raises a subclass of ``ratatoskr.errors.RatatoskrError``.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.longrunning import operations_pb2_grpc
from google.longrunning import operations_proto_pb2 as operations_pb2
from google.protobuf import duration_pb2

from ratatoskr.address import DEFAULT_ADDRESS, parse_address
from ratatoskr.embedded import DEFAULT_PROBE_SECS, ratd_answers, start_embedded
from ratatoskr.errors import ConnectionFailed, from_rpc_error
from ratatoskr.helpers import ChatOptions, GenerateOptions, Message
from ratatoskr.realtime import RealtimeOpening, session_config
from ratatoskr.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    chat_pb2,
    inference_pb2,
    jobs_pb2,
    media_pb2,
    models_pb2,
    ratatoskr_pb2,
    ratatoskr_pb2_grpc,
    realtime_pb2,
    usage_pb2,
    usage_pb2_grpc,
)

if TYPE_CHECKING:
    from ratd.embedded import EmbeddedDaemon

T = TypeVar("T")

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]

# A PEM file's path, or its content.
PemArg = str | os.PathLike[str] | bytes

MessagesArg = str | chat_pb2.Message | Iterable[chat_pb2.Message]


def _messages(messages: MessagesArg) -> list[chat_pb2.Message]:
    if isinstance(messages, str):
        return [Message.user(messages)]
    if isinstance(messages, chat_pb2.Message):
        return [messages]
    return list(messages)


def _pem(value: PemArg | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    with open(value, "rb") as file:
        return file.read()


def open_channel(
    address: str,
    *,
    tls_ca: PemArg | None = None,
    tls_cert: PemArg | None = None,
    tls_key: PemArg | None = None,
    load_balancing: str | None = None,
) -> grpc.aio.Channel:
    """A channel to ratd: TLS for ``https://`` or when any TLS file is given (the CA
    defaults to the system's roots), with a client certificate for mutual TLS.
    ``load_balancing``: a gRPC policy ("round_robin": each call to the next of the
    addresses the target resolves to, e.g. ``dns:///ratd-headless.ns.svc:9741``);
    default gRPC's ``pick_first`` (one ratd per channel)."""
    target, tls = parse_address(address)
    if bool(tls_cert) != bool(tls_key):
        raise ValueError("tls_cert and tls_key go together (a client certificate and its key)")
    options: list[tuple[str, str | int]] = list(CHANNEL_OPTIONS)
    if load_balancing:
        config: dict[str, object] = {"loadBalancingConfig": [{load_balancing: {}}]}
        options.append(("grpc.service_config", json.dumps(config)))
    if not (tls or tls_ca or tls_cert):
        return grpc.aio.insecure_channel(target, options=options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_pem(tls_ca),
        private_key=_pem(tls_key),
        certificate_chain=_pem(tls_cert),
    )
    return grpc.aio.secure_channel(target, credentials, options=options)


def _merge(base: Any, overrides: Any) -> Any:
    merged = type(base)()
    merged.CopyFrom(base)
    merged.MergeFrom(overrides)
    return merged


class ServiceClient:
    """Async client of ratd. Use ``await ServiceClient.connect(address)``, or
    ``embedded()`` / ``auto()`` for ratd's gateway inside this process.

    ``mode`` says which: ``"remote"`` (a ratd reached over the network or a socket) or
    ``"embedded"`` (a ratd served in this process, stopped by ``close()``)."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        timeout: float | None = None,
        api_key: str | None = None,
        user: str | None = None,
    ) -> None:
        self._channel = channel
        self._stub = ratatoskr_pb2_grpc.RatatoskrStub(channel)
        self._admin = admin_pb2_grpc.AdminServiceStub(channel)
        self._usage = usage_pb2_grpc.UsageServiceStub(channel)
        self._operations = operations_pb2_grpc.OperationsStub(channel)
        self.timeout = timeout
        # Sent with every call; never part of a repr or an error.
        metadata: list[tuple[str, str]] = []
        if api_key:
            metadata.append(("authorization", f"Bearer {api_key}"))
        if user:  # the end user, for ratd's per-user limits and usage
            metadata.append(("x-ratatoskr-user", user))
        self._metadata = tuple(metadata) or None
        self.mode = "remote"
        self._embedded: EmbeddedDaemon | None = None

    @classmethod
    async def connect(
        cls,
        address: str = DEFAULT_ADDRESS,
        *,
        timeout: float | None = None,
        wait_ready: float | None = None,
        tls_ca: PemArg | None = None,
        tls_cert: PemArg | None = None,
        tls_key: PemArg | None = None,
        api_key: str | None = None,
        load_balancing: str | None = None,
        user: str | None = None,
    ) -> ServiceClient:
        """Open a channel to ratd. ``timeout`` is the default per-call deadline in seconds;
        ``wait_ready`` waits up to that many seconds for the channel to connect.
        ``load_balancing="round_robin"`` spreads calls over every address the target
        resolves to (many replicas behind a headless Service: ``dns:///name:9741``).

        ``https://host:port`` (or any ``tls_*``) connects with TLS: ``tls_ca`` is the CA
        that signed ratd's certificate (default: the system's roots), ``tls_cert`` and
        ``tls_key`` the client certificate for mutual TLS (paths or PEM bytes).
        ``api_key`` (default ``$RATD_API_KEY``) goes with every call as
        ``authorization: Bearer <key>``; ``user`` (an end user's id) as
        ``x-ratatoskr-user``, for per-user limits and usage."""
        if api_key is None:
            api_key = os.environ.get("RATD_API_KEY") or None
        channel = open_channel(
            address,
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
            load_balancing=load_balancing,
        )
        if wait_ready is not None:
            try:
                await asyncio.wait_for(channel.channel_ready(), wait_ready)
            except TimeoutError:
                await channel.close()
                raise ConnectionFailed(
                    f"ratd at {address} did not answer within {wait_ready}s",
                    code=grpc.StatusCode.UNAVAILABLE,
                ) from None
        return cls(channel, timeout=timeout, api_key=api_key, user=user)

    @classmethod
    async def embedded(
        cls,
        config_path: str | os.PathLike[str] | None = None,
        *,
        secrets_path: str | os.PathLike[str] | None = None,
        default_config: bool = False,
        timeout: float | None = None,
        api_key: str | None = None,
    ) -> ServiceClient:
        """ratd's gateway in this process, no daemon to run: the config is read as ratd
        reads it (``config_path``, else ``~/.config/ratatoskr/config.toml`` or
        ``/etc/ratatoskr/config.toml``, else the embedded default; ``default_config``
        forces the embedded default) and served on a private unix socket in this
        process, so calls, errors and streams are those of a ratd process. ``close()``
        stops it. Needs ``ratatoskr[server]`` (ImportError naming it otherwise)."""
        daemon = await start_embedded(config_path, secrets_path, default_config)
        try:
            client = await cls.connect(daemon.address, timeout=timeout, api_key=api_key)
        except BaseException:
            await daemon.stop()
            raise
        client.mode = "embedded"
        client._embedded = daemon
        return client

    @classmethod
    async def auto(
        cls,
        address: str = DEFAULT_ADDRESS,
        *,
        probe_secs: float = DEFAULT_PROBE_SECS,
        config_path: str | os.PathLike[str] | None = None,
        secrets_path: str | os.PathLike[str] | None = None,
        default_config: bool = False,
        timeout: float | None = None,
        api_key: str | None = None,
        tls_ca: PemArg | None = None,
        tls_cert: PemArg | None = None,
        tls_key: PemArg | None = None,
    ) -> ServiceClient:
        """The ratd at ``address`` when it answers a health check within
        ``probe_secs``; otherwise ``embedded()`` with the config arguments. ``tls_*``
        as for ``connect`` (for the remote ratd only)."""
        client = await cls.connect(
            address,
            timeout=timeout,
            api_key=api_key,
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
        )
        if await ratd_answers(client._channel, probe_secs, client._metadata):
            return client
        await client.close()
        return await cls.embedded(
            config_path,
            secrets_path=secrets_path,
            default_config=default_config,
            timeout=timeout,
            api_key=api_key,
        )

    async def close(self) -> None:
        """Close the channel; in embedded mode, also drain and stop the in-process ratd."""
        await self._channel.close()
        if self._embedded is not None:
            daemon, self._embedded = self._embedded, None
            await daemon.stop()

    async def __aenter__(self) -> ServiceClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def _call(
        self, method: Callable[..., Awaitable[T]], request: Any, timeout: float | None
    ) -> T:
        try:
            return await method(
                request,
                timeout=timeout if timeout is not None else self.timeout,
                metadata=self._metadata,
            )
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None

    async def _stream(
        self, method: Callable[..., Any], request: Any, timeout: float | None
    ) -> AsyncIterator[Any]:
        call = method(
            request,
            timeout=timeout if timeout is not None else self.timeout,
            metadata=self._metadata,
        )
        try:
            async for event in call:
                yield event
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None
        finally:
            call.cancel()

    # -- media ----------------------------------------------------------------------

    async def generate_image(
        self,
        prompt: str,
        model: str,
        *,
        size: str = "",
        quality: str = "",
        count: int = 0,
        input_images: Sequence[bytes] = (),
        output_format: str = "",
        timeout: float | None = None,
    ) -> media_pb2.GenerateImageResponse:
        """Images from a prompt; with ``input_images`` (raw bytes), an edit of them."""
        request = media_pb2.GenerateImageRequest(
            model=model,
            prompt=prompt,
            size=size,
            quality=quality,
            count=count,
            output_format=output_format,
            input_images=[chat_pb2.ImagePart(data=data) for data in input_images],
        )
        return await self._call(self._stub.GenerateImage, request, timeout)

    async def transcribe(
        self,
        audio: bytes,
        model: str,
        *,
        language: str = "",
        timestamps: bool = False,
        prompt: str = "",
        timeout: float | None = None,
    ) -> media_pb2.TranscribeResponse:
        """Speech to text (the audio's type is sniffed from its bytes)."""
        request = media_pb2.TranscribeRequest(
            model=model, audio=audio, language=language, timestamps=timestamps, prompt=prompt
        )
        return await self._call(self._stub.Transcribe, request, timeout)

    async def transcribe_stream(
        self,
        chunks: Iterable[bytes] | AsyncIterator[bytes],
        model: str,
        *,
        language: str = "",
        timestamps: bool = False,
        timeout: float | None = None,
    ) -> media_pb2.TranscribeResponse:
        """Speech to text of long audio sent as a stream of chunks."""
        config = media_pb2.TranscribeRequest(model=model, language=language, timestamps=timestamps)

        async def messages() -> AsyncIterator[media_pb2.TranscribeStreamRequest]:
            yield media_pb2.TranscribeStreamRequest(config=config)
            if isinstance(chunks, AsyncIterator):
                async for chunk in chunks:
                    yield media_pb2.TranscribeStreamRequest(audio=chunk)
            else:
                for chunk in chunks:
                    yield media_pb2.TranscribeStreamRequest(audio=chunk)

        answer = await self._call(self._stub.TranscribeStream, messages(), timeout)
        return answer.result

    def synthesize(
        self,
        text: str,
        model: str,
        *,
        voice: str = "",
        format: str = "",
        speed: float | None = None,
        instructions: str = "",
        timeout: float | None = None,
    ) -> AsyncIterator[media_pb2.SynthesizeResponse]:
        """Text to speech: audio chunks as the provider makes them, the last with ``done``."""
        request = media_pb2.SynthesizeRequest(
            model=model,
            text=text,
            voice=voice,
            format=format,
            speed=speed,
            instructions=instructions,
        )
        return self._stream(self._stub.Synthesize, request, timeout)

    # -- chat and generation --------------------------------------------------------

    @staticmethod
    def chat_request(
        messages: MessagesArg,
        tools: Sequence[chat_pb2.ToolDefinition] | None = None,
        options: chat_pb2.ChatOptions | None = None,
        **option_kwargs: Any,
    ) -> chat_pb2.ChatRequest:
        """The ChatRequest that ``chat`` sends; keyword options override ``options``."""
        opts = options or chat_pb2.ChatOptions()
        if option_kwargs:
            opts = _merge(opts, ChatOptions(**option_kwargs))
        return chat_pb2.ChatRequest(messages=_messages(messages), tools=tools or [], options=opts)

    async def chat(
        self,
        messages: MessagesArg,
        tools: Sequence[chat_pb2.ToolDefinition] | None = None,
        options: chat_pb2.ChatOptions | None = None,
        *,
        timeout: float | None = None,
        **option_kwargs: Any,
    ) -> chat_pb2.ChatResponse:
        """One chat completion. ``messages`` may be a plain string (one user message);
        options come as a ``ChatOptions`` message, keyword arguments, or both."""
        request = self.chat_request(messages, tools, options, **option_kwargs)
        return await self._call(self._stub.Chat, request, timeout)

    def chat_stream(
        self,
        messages: MessagesArg,
        tools: Sequence[chat_pb2.ToolDefinition] | None = None,
        options: chat_pb2.ChatOptions | None = None,
        *,
        timeout: float | None = None,
        **option_kwargs: Any,
    ) -> AsyncIterator[chat_pb2.ChatStreamResponse]:
        """Stream chat events (content, reasoning, tool calls, usage, done) as they arrive."""
        chat = self.chat_request(messages, tools, options, **option_kwargs)
        request = chat_pb2.ChatStreamRequest(
            messages=chat.messages, tools=chat.tools, options=chat.options
        )
        return self._stream(self._stub.ChatStream, request, timeout)

    # -- realtime -------------------------------------------------------------------

    def realtime(
        self,
        model: str | realtime_pb2.RealtimeSessionConfig,
        *,
        timeout: float | None = None,
        **config_kwargs: Any,
    ) -> RealtimeOpening:
        """``async with client.realtime("gpt-realtime", voice="marin") as session``: a
        realtime session (``ratatoskr.realtime.RealtimeSession``). ``model`` is a model
        name (``config_kwargs`` as for ``ratatoskr.realtime.session_config``) or a whole
        ``RealtimeSessionConfig``. ``timeout`` bounds the whole session."""
        config = model if not isinstance(model, str) else session_config(model, **config_kwargs)
        call = self._stub.Realtime(
            timeout=timeout if timeout is not None else self.timeout, metadata=self._metadata
        )
        return RealtimeOpening(call, config)

    @staticmethod
    def _generate_options(
        options: chat_pb2.GenerateOptions | None, option_kwargs: dict[str, Any]
    ) -> chat_pb2.GenerateOptions:
        opts = options or chat_pb2.GenerateOptions()
        return _merge(opts, GenerateOptions(**option_kwargs)) if option_kwargs else opts

    async def generate(
        self,
        prompt: str,
        options: chat_pb2.GenerateOptions | None = None,
        *,
        timeout: float | None = None,
        **option_kwargs: Any,
    ) -> chat_pb2.GenerateResponse:
        request = chat_pb2.GenerateRequest(
            prompt=prompt, options=self._generate_options(options, option_kwargs)
        )
        return await self._call(self._stub.Generate, request, timeout)

    def generate_stream(
        self,
        prompt: str,
        options: chat_pb2.GenerateOptions | None = None,
        *,
        timeout: float | None = None,
        **option_kwargs: Any,
    ) -> AsyncIterator[chat_pb2.GenerateStreamResponse]:
        request = chat_pb2.GenerateStreamRequest(
            prompt=prompt, options=self._generate_options(options, option_kwargs)
        )
        return self._stream(self._stub.GenerateStream, request, timeout)

    # -- inference --------------------------------------------------------------------

    async def embed(
        self,
        text: str,
        model: str,
        *,
        dimensions: int | None = None,
        timeout: float | None = None,
    ) -> inference_pb2.EmbedResponse:
        """``dimensions``: a shorter vector, where the model can give one (see the proto)."""
        request = inference_pb2.EmbedRequest(text=text, model=model, dimensions=dimensions)
        return await self._call(self._stub.Embed, request, timeout)

    async def embed_batch(
        self,
        texts: Sequence[str],
        model: str,
        *,
        dimensions: int | None = None,
        timeout: float | None = None,
    ) -> list[inference_pb2.Embedding]:
        request = inference_pb2.EmbedBatchRequest(
            texts=list(texts), model=model, dimensions=dimensions
        )
        response = await self._call(self._stub.EmbedBatch, request, timeout)
        return list(response.embeddings)

    async def infer_nli(
        self, premise: str, hypothesis: str, model: str, *, timeout: float | None = None
    ) -> inference_pb2.InferNliResponse:
        request = inference_pb2.InferNliRequest(premise=premise, hypothesis=hypothesis, model=model)
        return await self._call(self._stub.InferNli, request, timeout)

    async def infer_nli_batch(
        self, pairs: Sequence[tuple[str, str]], model: str, *, timeout: float | None = None
    ) -> list[inference_pb2.NliResult]:
        request = inference_pb2.InferNliBatchRequest(
            pairs=[inference_pb2.NliPair(premise=p, hypothesis=h) for p, h in pairs], model=model
        )
        response = await self._call(self._stub.InferNliBatch, request, timeout)
        return list(response.results)

    async def classify_zero_shot(
        self,
        text: str,
        labels: Sequence[str],
        model: str,
        *,
        multi_label: bool | None = None,
        hypothesis_template: str | None = None,
        timeout: float | None = None,
    ) -> inference_pb2.ClassifyZeroShotResponse:
        request = inference_pb2.ClassifyZeroShotRequest(
            text=text,
            labels=list(labels),
            model=model,
            multi_label=multi_label,
            hypothesis_template=hypothesis_template,
        )
        return await self._call(self._stub.ClassifyZeroShot, request, timeout)

    async def classify_stance(
        self, text: str, target: str, model: str, *, timeout: float | None = None
    ) -> inference_pb2.ClassifyStanceResponse:
        request = inference_pb2.ClassifyStanceRequest(text=text, target=target, model=model)
        return await self._call(self._stub.ClassifyStance, request, timeout)

    async def count_tokens(self, text: str, model: str, *, timeout: float | None = None) -> int:
        request = inference_pb2.CountTokensRequest(text=text, model=model)
        return (await self._call(self._stub.CountTokens, request, timeout)).count

    async def tokenize(
        self, text: str, model: str, *, timeout: float | None = None
    ) -> list[inference_pb2.Token]:
        request = inference_pb2.TokenizeRequest(text=text, model=model)
        return list((await self._call(self._stub.Tokenize, request, timeout)).tokens)

    # -- models ---------------------------------------------------------------------

    async def list_models(
        self, provider: str = "", *, timeout: float | None = None
    ) -> list[models_pb2.ModelInfo]:
        request = models_pb2.ListModelsRequest(provider=provider)
        return list((await self._call(self._stub.ListModels, request, timeout)).models)

    async def model_status(
        self, model: str, *, timeout: float | None = None
    ) -> models_pb2.ModelStatusResponse:
        request = models_pb2.ModelStatusRequest(model=model)
        return await self._call(self._stub.ModelStatus, request, timeout)

    async def model_metadata(
        self, model: str, *, timeout: float | None = None
    ) -> models_pb2.ModelMetadata | None:
        """What ratd knows of the model, from memory; None when it knows nothing."""
        request = models_pb2.GetModelMetadataRequest(model=model)
        response = await self._call(self._stub.GetModelMetadata, request, timeout)
        return response.metadata if response.found else None

    async def fetch_model_metadata(
        self, model: str, *, timeout: float | None = None
    ) -> models_pb2.ModelMetadata | None:
        """Like ``model_metadata``, but ratd may ask the provider first."""
        request = models_pb2.FetchModelMetadataRequest(model=model)
        response = await self._call(self._stub.FetchModelMetadata, request, timeout)
        return response.metadata if response.found else None

    async def capabilities(self, *, timeout: float | None = None) -> list[int]:
        """The ``ModelCapability`` values the daemon offers."""
        request = models_pb2.GetCapabilitiesRequest()
        return list((await self._call(self._stub.GetCapabilities, request, timeout)).capabilities)

    async def resolve_preset(
        self, tier: str, capability: str, *, timeout: float | None = None
    ) -> models_pb2.ResolvePresetResponse:
        request = models_pb2.ResolvePresetRequest(tier=tier, capability=capability)
        return await self._call(self._stub.ResolvePreset, request, timeout)

    async def list_presets(
        self, *, timeout: float | None = None
    ) -> list[models_pb2.PresetTierEntry]:
        request = models_pb2.ListPresetsRequest()
        return list((await self._call(self._stub.ListPresets, request, timeout)).tiers)

    async def health(self, *, timeout: float | None = None) -> ratatoskr_pb2.HealthResponse:
        return await self._call(self._stub.Health, ratatoskr_pb2.HealthRequest(), timeout)

    # -- administration of local models -------------------------------------------------

    async def list_loaded(self, *, timeout: float | None = None) -> list[models_pb2.LoadedModel]:
        request = admin_pb2.ListLoadedModelsRequest()
        return list((await self._call(self._admin.ListLoadedModels, request, timeout)).models)

    async def load_model(
        self, model: str, *, pin: bool = False, timeout: float | None = None
    ) -> models_pb2.LoadedModel:
        request = admin_pb2.LoadModelRequest(model=model, pin=pin)
        return (await self._call(self._admin.LoadModel, request, timeout)).model

    async def unload_model(self, model: str, *, timeout: float | None = None) -> bool:
        request = admin_pb2.UnloadModelRequest(model=model)
        return (await self._call(self._admin.UnloadModel, request, timeout)).unloaded

    def download_model(
        self, model: str, revision: str = "", *, timeout: float | None = None
    ) -> AsyncIterator[admin_pb2.DownloadModelResponse]:
        request = admin_pb2.DownloadModelRequest(model=model, revision=revision)
        return self._stream(self._admin.DownloadModel, request, timeout)

    async def reload_config(
        self, *, timeout: float | None = None
    ) -> admin_pb2.ReloadConfigResponse:
        return await self._call(self._admin.ReloadConfig, admin_pb2.ReloadConfigRequest(), timeout)

    async def usage(
        self,
        *,
        tenant: str = "",
        start_unix: int = 0,
        end_unix: int = 0,
        group_by: str = "",
        timeout: float | None = None,
    ) -> usage_pb2.GetUsageResponse:
        """Requests, tokens and cost (UsageService.GetUsage) of the caller's tenant, or of
        ``tenant`` / every tenant for an admin. ``group_by``: "", "model", "provider" or
        "user"; the window defaults to the last 24 hours."""
        request = usage_pb2.GetUsageRequest(
            tenant=tenant,
            start_unix=start_unix,
            end_unix=end_unix,
            group_by=f"USAGE_GROUP_BY_{(group_by or 'unspecified').upper()}",
        )
        return await self._call(self._usage.GetUsage, request, timeout)

    # -- jobs (google.longrunning.Operations) ---------------------------------------------

    async def submit_batch(
        self,
        items: Iterable[jobs_pb2.BatchItem],
        *,
        concurrency: int = 0,
        display_name: str = "",
        provider: str = "",
        timeout: float | None = None,
    ) -> jobs_pb2.SubmitBatchResponse:
        """Start a batch job (``BatchItem(custom_id=..., chat=ChatRequest(...))`` or
        ``embed=EmbedRequest(...)``); follow it by the answer's ``name``. ``provider``
        (e.g. "openai") runs it at that provider's batch API."""
        request = jobs_pb2.SubmitBatchRequest(
            items=list(items),
            concurrency=concurrency,
            display_name=display_name,
            provider=provider,
        )
        return await self._call(self._stub.SubmitBatch, request, timeout)

    async def generate_video(
        self,
        prompt: str,
        *,
        model: str = "",
        display_name: str = "",
        timeout: float | None = None,
    ) -> jobs_pb2.GenerateVideoResponse:
        """Start a video job (default model: gemini-omni-flash-preview); follow it by the
        answer's ``name``; ``video_result(operation)`` once done."""
        request = jobs_pb2.GenerateVideoRequest(
            prompt=prompt, model=model, display_name=display_name
        )
        return await self._call(self._stub.GenerateVideo, request, timeout)

    async def get_operation(
        self, name: str, *, timeout: float | None = None
    ) -> operations_pb2.Operation:
        request = operations_pb2.GetOperationRequest(name=name)
        return await self._call(self._operations.GetOperation, request, timeout)

    async def list_operations(
        self,
        *,
        done: bool | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> operations_pb2.ListOperationsResponse:
        """The caller's jobs, newest first (``done``: only finished or only running)."""
        request = operations_pb2.ListOperationsRequest(
            filter="" if done is None else f"done={str(done).lower()}",
            page_size=page_size,
            page_token=page_token,
        )
        return await self._call(self._operations.ListOperations, request, timeout)

    async def cancel_operation(self, name: str, *, timeout: float | None = None) -> None:
        request = operations_pb2.CancelOperationRequest(name=name)
        await self._call(self._operations.CancelOperation, request, timeout)

    async def delete_operation(self, name: str, *, timeout: float | None = None) -> None:
        request = operations_pb2.DeleteOperationRequest(name=name)
        await self._call(self._operations.DeleteOperation, request, timeout)

    async def wait_operation(
        self, name: str, *, wait: float | None = None, timeout: float | None = None
    ) -> operations_pb2.Operation:
        """The job once done; WaitOperation asked again until it is, or until ``wait``
        seconds have passed (None: no limit), when it is answered as it is then."""
        loop = asyncio.get_running_loop()
        end = None if wait is None else loop.time() + wait
        while True:
            request = operations_pb2.WaitOperationRequest(name=name)
            if end is not None:
                request.timeout.CopyFrom(_duration(max(0.0, end - loop.time())))
            operation = await self._call(self._operations.WaitOperation, request, timeout)
            if operation.done or (end is not None and loop.time() >= end):
                return operation


def _duration(seconds: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromTimedelta(timedelta(seconds=seconds))
    return duration


def job_metadata(operation: operations_pb2.Operation) -> jobs_pb2.JobMetadata:
    """A ratd job's metadata (kind, state, progress) out of its Operation."""
    meta = jobs_pb2.JobMetadata()
    operation.metadata.Unpack(meta)
    return meta


def batch_result(operation: operations_pb2.Operation) -> jobs_pb2.BatchResult:
    """A finished batch's results (in the order of its items). Raises ValueError when the
    operation is not a finished batch."""
    result = jobs_pb2.BatchResult()
    if not operation.done or not operation.response.Unpack(result):
        raise ValueError(f"{operation.name} holds no batch result")
    return result


def video_result(operation: operations_pb2.Operation) -> jobs_pb2.VideoResult:
    """A finished video job's videos. Raises ValueError when the operation is not one."""
    result = jobs_pb2.VideoResult()
    if not operation.done or not operation.response.Unpack(result):
        raise ValueError(f"{operation.name} holds no video result")
    return result
