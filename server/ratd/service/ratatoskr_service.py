"""The ``ratatoskr.v1.Ratatoskr`` service: each RPC hands its request to the gateway core
and returns what the core answers. Nothing but gRPC concerns live here."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import TypeAlias

import grpc

from ratatoskr.v1 import (
    chat_pb2,
    inference_pb2,
    jobs_pb2,
    media_pb2,
    models_pb2,
    ratatoskr_pb2,
    ratatoskr_pb2_grpc,
    realtime_pb2,
)
from ratd import __version__, errors
from ratd.core.access import CALLER
from ratd.core.gateway import Gateway
from ratd.jobs.batch import BatchRunner, submit_batch
from ratd.jobs.manager import JobManager
from ratd.jobs.video import VideoRunner, generate_video
from ratd.service.guard import CallGuard

Context: TypeAlias = grpc.aio.ServicerContext


class RatatoskrService(ratatoskr_pb2_grpc.RatatoskrServicer):
    def __init__(
        self,
        guard: CallGuard,
        git_sha: str | None = None,
        jobs: JobManager | None = None,
        video: VideoRunner | None = None,
        batch: BatchRunner | None = None,
    ) -> None:
        self.guard = guard
        self.git_sha = git_sha
        # Long-running jobs (SubmitBatch); followed through google.longrunning.Operations.
        self.jobs = jobs
        self.video = video
        self.batch = batch
        self.serving = False

    # -- chat and generation -----------------------------------------------------------------

    async def Chat(self, request: chat_pb2.ChatRequest, context: Context) -> chat_pb2.ChatResponse:
        return await self.guard.unary(context, "Chat", lambda gw: gw.chat(request))

    async def ChatStream(
        self, request: chat_pb2.ChatStreamRequest, context: Context
    ) -> AsyncIterator[chat_pb2.ChatStreamResponse]:
        async for event in self.guard.stream(
            context, "ChatStream", lambda gw: gw.chat_stream(request)
        ):
            yield event

    async def Generate(
        self, request: chat_pb2.GenerateRequest, context: Context
    ) -> chat_pb2.GenerateResponse:
        return await self.guard.unary(context, "Generate", lambda gw: gw.generate(request))

    async def GenerateStream(
        self, request: chat_pb2.GenerateStreamRequest, context: Context
    ) -> AsyncIterator[chat_pb2.GenerateStreamResponse]:
        async for event in self.guard.stream(
            context,
            "GenerateStream",
            lambda gw: gw.generate_stream(request),
        ):
            yield event

    async def Realtime(
        self, request_iterator: AsyncIterator[realtime_pb2.RealtimeRequest], context: Context
    ) -> AsyncIterator[realtime_pb2.RealtimeResponse]:
        async for event in self.guard.stream(
            context, "Realtime", lambda gw: gw.realtime(request_iterator)
        ):
            yield event

    # -- inference ---------------------------------------------------------------------------------

    async def Embed(
        self, request: inference_pb2.EmbedRequest, context: Context
    ) -> inference_pb2.EmbedResponse:
        return await self.guard.unary(context, "Embed", lambda gw: gw.embed(request))

    async def EmbedBatch(
        self, request: inference_pb2.EmbedBatchRequest, context: Context
    ) -> inference_pb2.EmbedBatchResponse:
        return await self.guard.unary(context, "EmbedBatch", lambda gw: gw.embed_batch(request))

    async def InferNli(
        self, request: inference_pb2.InferNliRequest, context: Context
    ) -> inference_pb2.InferNliResponse:
        return await self.guard.unary(context, "InferNli", lambda gw: gw.infer_nli(request))

    async def InferNliBatch(
        self, request: inference_pb2.InferNliBatchRequest, context: Context
    ) -> inference_pb2.InferNliBatchResponse:
        return await self.guard.unary(
            context, "InferNliBatch", lambda gw: gw.infer_nli_batch(request)
        )

    async def ClassifyZeroShot(
        self, request: inference_pb2.ClassifyZeroShotRequest, context: Context
    ) -> inference_pb2.ClassifyZeroShotResponse:
        return await self.guard.unary(
            context,
            "ClassifyZeroShot",
            lambda gw: gw.classify_zero_shot(request),
        )

    async def ClassifyStance(
        self, request: inference_pb2.ClassifyStanceRequest, context: Context
    ) -> inference_pb2.ClassifyStanceResponse:
        return await self.guard.unary(
            context, "ClassifyStance", lambda gw: gw.classify_stance(request)
        )

    async def CountTokens(
        self, request: inference_pb2.CountTokensRequest, context: Context
    ) -> inference_pb2.CountTokensResponse:
        return await self.guard.unary(context, "CountTokens", lambda gw: gw.count_tokens(request))

    async def Tokenize(
        self, request: inference_pb2.TokenizeRequest, context: Context
    ) -> inference_pb2.TokenizeResponse:
        return await self.guard.unary(context, "Tokenize", lambda gw: gw.tokenize(request))

    # -- media ---------------------------------------------------------------------------------

    async def GenerateImage(
        self, request: media_pb2.GenerateImageRequest, context: Context
    ) -> media_pb2.GenerateImageResponse:
        return await self.guard.unary(
            context, "GenerateImage", lambda gw: gw.generate_image(request)
        )

    async def Transcribe(
        self, request: media_pb2.TranscribeRequest, context: Context
    ) -> media_pb2.TranscribeResponse:
        return await self.guard.unary(context, "Transcribe", lambda gw: gw.transcribe(request))

    async def TranscribeStream(
        self, request_iterator: AsyncIterable[media_pb2.TranscribeStreamRequest], context: Context
    ) -> media_pb2.TranscribeStreamResponse:
        async def call(gateway: Gateway) -> media_pb2.TranscribeStreamResponse:
            request = await _gathered(request_iterator, gateway.config.media.max_audio_bytes)
            return media_pb2.TranscribeStreamResponse(result=await gateway.transcribe(request))

        return await self.guard.unary(context, "TranscribeStream", call)

    async def Synthesize(
        self, request: media_pb2.SynthesizeRequest, context: Context
    ) -> AsyncIterator[media_pb2.SynthesizeResponse]:
        async for chunk in self.guard.stream(
            context, "Synthesize", lambda gw: gw.synthesize(request)
        ):
            yield chunk

    # -- models --------------------------------------------------------------------------

    async def ListModels(
        self, request: models_pb2.ListModelsRequest, context: Context
    ) -> models_pb2.ListModelsResponse:
        found = await self.guard.unary(
            context, "ListModels", lambda gw: gw.catalog.list_models(request.provider)
        )
        return models_pb2.ListModelsResponse(models=found)

    async def ModelStatus(
        self, request: models_pb2.ModelStatusRequest, context: Context
    ) -> models_pb2.ModelStatusResponse:
        return await self.guard.unary(
            context, "ModelStatus", lambda gw: gw.catalog.status(request.model)
        )

    async def GetModelMetadata(
        self, request: models_pb2.GetModelMetadataRequest, context: Context
    ) -> models_pb2.GetModelMetadataResponse:
        found = await self.guard.unary(
            context, "GetModelMetadata", lambda gw: gw.catalog.metadata(request.model)
        )
        return models_pb2.GetModelMetadataResponse(found=found is not None, metadata=found)

    async def FetchModelMetadata(
        self, request: models_pb2.FetchModelMetadataRequest, context: Context
    ) -> models_pb2.FetchModelMetadataResponse:
        found = await self.guard.unary(
            context,
            "FetchModelMetadata",
            lambda gw: gw.catalog.fetch_metadata(
                request.model, gw.config.registry.fetch_timeout_secs
            ),
        )
        return models_pb2.FetchModelMetadataResponse(found=found is not None, metadata=found)

    async def ResolvePreset(
        self, request: models_pb2.ResolvePresetRequest, context: Context
    ) -> models_pb2.ResolvePresetResponse:
        return await self.guard.unary(
            context,
            "ResolvePreset",
            lambda gw: gw.catalog.resolve_preset(request.tier, request.capability),
        )

    async def ListPresets(
        self, request: models_pb2.ListPresetsRequest, context: Context
    ) -> models_pb2.ListPresetsResponse:
        tiers = await self.guard.unary(context, "ListPresets", lambda gw: gw.catalog.list_presets())
        return models_pb2.ListPresetsResponse(tiers=tiers)

    async def GetCapabilities(
        self, request: models_pb2.GetCapabilitiesRequest, context: Context
    ) -> models_pb2.GetCapabilitiesResponse:
        found = self.guard.holder.current.catalog.capabilities()
        return models_pb2.GetCapabilitiesResponse(capabilities=found)

    async def Health(
        self, request: ratatoskr_pb2.HealthRequest, context: Context
    ) -> ratatoskr_pb2.HealthResponse:
        reply = ratatoskr_pb2.HealthResponse(
            healthy=self.serving, version=__version__, git_sha=self.git_sha
        )
        state = self.guard.holder.current.state
        if state.shared:
            reply.state_backend_up = state.up
        return reply

    # -- jobs ----------------------------------------------------------------------------------

    async def SubmitBatch(
        self, request: jobs_pb2.SubmitBatchRequest, context: Context
    ) -> jobs_pb2.SubmitBatchResponse:
        jobs, batch = self.jobs, self.batch
        if jobs is None or batch is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this ratd runs no jobs")
            raise AssertionError("unreachable")
        return await self.guard.unary(
            context, "SubmitBatch", lambda _: submit_batch(jobs, batch, request, CALLER.get())
        )

    async def GenerateVideo(
        self, request: jobs_pb2.GenerateVideoRequest, context: Context
    ) -> jobs_pb2.GenerateVideoResponse:
        jobs, video = self.jobs, self.video
        if jobs is None or video is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this ratd runs no jobs")
            raise AssertionError("unreachable")
        return await self.guard.unary(
            context,
            "GenerateVideo",
            lambda _: generate_video(jobs, video, request, CALLER.get()),
        )


async def _gathered(
    messages: AsyncIterable[media_pb2.TranscribeStreamRequest], limit: int
) -> media_pb2.TranscribeRequest:
    """The one TranscribeRequest a client stream of chunks stands for: the first
    message's config, every message's audio in order. Refused as soon as the audio
    passes ``limit`` (media.max_audio_bytes), before more is buffered."""
    request: media_pb2.TranscribeRequest | None = None
    pieces: list[bytes] = []
    size = 0
    async for message in messages:
        if request is None:
            if not message.HasField("config"):
                raise errors.InvalidInput(
                    "config: the first message of the stream must carry the config",
                    field="config",
                )
            request = media_pb2.TranscribeRequest()
            request.CopyFrom(message.config)
            pieces.append(request.audio)
            size += len(request.audio)
        elif message.HasField("config"):
            raise errors.InvalidInput(
                "config: only the first message of the stream may carry the config",
                field="config",
            )
        pieces.append(message.audio)
        size += len(message.audio)
        if size > limit:
            raise errors.InvalidInput(
                f"audio: the stream's audio passes the limit of {limit} bytes "
                "(media.max_audio_bytes)",
                field="audio",
            )
    if request is None:
        raise errors.InvalidInput("config: the stream carried no message", field="config")
    request.audio = b"".join(pieces)
    return request
