"""Video generation jobs: Gemini Omni through the Interactions API's background mode.

Reference (read 2026-12-04): the Gemini API's video generation guide on ai.google.dev
names Gemini Omni Flash (``gemini-omni-flash-preview``) the default video model, served
only by the Interactions API: ``POST /v1beta/interactions`` with ``model``, ``input``
(the prompt), ``response_modalities: ["video"]``, ``background: true`` (and ``store:
true``, which fetching needs) answers at once with the interaction's ``id`` and status
``in_progress``; ``GET /v1beta/interactions/{id}`` is polled until the status is final;
the finished interaction's ``model_output`` step holds ``{"type": "video", "mime_type":
"video/mp4", "data": <base64>}`` (or a ``uri`` for larger files);
``POST .../{id}/cancel`` stops it. Veo 3.1 (``predictLongRunning`` operations, moved by
the guide to generateContent) and OpenAI's Videos API (removed 2026-09-24, per OpenAI's
deprecations page) are not served.

The polling is ``Interactions.until_done``: 0.25 s, doubling to at most 10 s between
polls, a passing failure (5xx, 429, the transport) tried again up to three times in a
row. The interaction's id is written to the job store before the first poll, so a
restarted ratd polls the same interaction again instead of starting another.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any

from ratatoskr.v1 import jobs_pb2
from ratd import errors
from ratd.config import JobsConfig
from ratd.core.access import Tenant
from ratd.jobs.manager import JobManager, RunningJob, metadata_of
from ratd.jobs.store import JobRecord
from ratd.providers import gemini_interactions as gi
from ratd.providers.gemini import GeminiProvider
from ratd.service.holder import GatewayHolder

log = logging.getLogger(__name__)

KIND = "video"
DEFAULT_MODEL = "gemini-omni-flash-preview"
MAX_PROMPT_CHARS = 32_000


class VideoRunner:
    """Starts, polls, resumes and cancels video interactions (module docstring)."""

    kind = KIND

    def can_resume(self, record: JobRecord) -> bool:
        return True  # with the interaction's id polled again, else started anew

    def __init__(self, holder: GatewayHolder, config: JobsConfig) -> None:
        self.holder = holder
        self.config = config

    def provider(self, name: str) -> GeminiProvider:
        """The configured google provider called ``name`` ("": the first one)."""
        for provider in self.holder.current.providers.values():
            if isinstance(provider, GeminiProvider) and name in ("", provider.name):
                return provider
        raise errors.NoProvider(
            f"no configured provider of kind google{f' named {name!r}' if name else ''} "
            "serves video generation"
        )

    async def run(self, job: RunningJob) -> jobs_pb2.VideoResult:
        record = job.record
        request = jobs_pb2.GenerateVideoRequest.FromString(record.request)
        provider_name, model = split_model(request.model)
        provider = self.provider(record.upstream.get("provider", provider_name))
        interactions = provider.interactions
        interaction_id = record.upstream.get("id", "")
        if interaction_id:
            data: dict[str, Any] = {"status": "in_progress"}  # resumed: poll again
        else:
            data = await interactions.create(video_body(request.prompt, model), model)
            interaction_id = str(data["id"])
            await job.remember({"provider": provider.name, "id": interaction_id})
        status = str(data.get("status") or "")
        job.update(lambda meta: setattr(meta, "upstream_status", status))
        data = await interactions.until_done(interaction_id, data, model)
        final = str(data.get("status") or "")
        job.update(lambda meta: setattr(meta, "upstream_status", final))
        return video_result(data, provider.name, model)

    async def cancel(self, record: JobRecord) -> None:
        interaction_id = record.upstream.get("id")
        if interaction_id:
            provider = self.provider(record.upstream.get("provider", ""))
            await provider.interactions.cancel(interaction_id)


def split_model(name: str) -> tuple[str, str]:
    """("provider", "model") of "provider:model"; ("", model) of a bare name."""
    provider, sep, model = (name or DEFAULT_MODEL).partition(":")
    return (provider, model) if sep else ("", provider)


def video_body(prompt: str, model: str) -> dict[str, Any]:
    return {
        "model": model,
        "input": prompt,
        "response_modalities": ["video"],
        "background": True,
        "store": True,
    }


def video_result(data: dict[str, Any], provider: str, model: str) -> jobs_pb2.VideoResult:
    """The videos of a finished interaction; a failed or cancelled one raises its error,
    one that finished without a video is the provider's protocol fault."""
    status = str(data.get("status") or "")
    if status in ("failed", "cancelled"):
        found = data.get("errors") or [{"code": status.upper(), "message": f"the video {status}"}]
        raise gi.interaction_error(found[0], provider, model)
    result = jobs_pb2.VideoResult(model=str(data.get("model") or model))
    for step in data.get("steps") or ():
        if not isinstance(step, dict) or step.get("type") != "model_output":
            continue
        for item in step.get("content") or ():
            if isinstance(item, dict) and item.get("type") == "video":
                result.videos.append(_video(item, provider, model))
    if not result.videos:
        raise errors.UpstreamProtocolError(
            f"the interaction ended {status or 'without a status'} with no video",
            provider=provider,
            model=model,
        )
    return result


def _video(item: dict[str, Any], provider: str, model: str) -> jobs_pb2.GeneratedVideo:
    video = jobs_pb2.GeneratedVideo(
        mime_type=str(item.get("mime_type") or ""), uri=str(item.get("uri") or "")
    )
    if item.get("data"):
        try:
            video.data = base64.b64decode(str(item["data"]), validate=True)
        except (binascii.Error, ValueError):
            raise errors.UpstreamProtocolError(
                "a video whose data is not base64", provider=provider, model=model
            ) from None
    elif not video.uri:
        raise errors.UpstreamProtocolError(
            "a video with neither data nor uri", provider=provider, model=model
        )
    return video


async def generate_video(
    jobs: JobManager,
    runner: VideoRunner,
    request: jobs_pb2.GenerateVideoRequest,
    tenant: Tenant | None,
) -> jobs_pb2.GenerateVideoResponse:
    """GenerateVideo: check the request and the caller's allow-list, start the job."""
    if not request.prompt.strip():
        raise errors.InvalidInput("a video needs a prompt", field="prompt")
    if len(request.prompt) > MAX_PROMPT_CHARS:
        raise errors.InvalidInput(
            f"the prompt is longer than {MAX_PROMPT_CHARS} characters", field="prompt"
        )
    provider_name, model = split_model(request.model)
    provider = runner.provider(provider_name)
    if tenant is not None and not tenant.may_use(f"{provider.name}:{model}"):
        raise errors.ModelNotAllowed(
            f"tenant {tenant.name} may not use {provider.name}:{model}", model=model
        )
    meta = jobs_pb2.JobMetadata(
        provider=provider.name, model=model, display_name=request.display_name
    )
    record = await jobs.create(KIND, tenant, request, meta)
    return jobs_pb2.GenerateVideoResponse(name=record.name, metadata=metadata_of(record))
