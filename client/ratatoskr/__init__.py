"""Python client of the Ratatoskr gateway daemon (ratd).

    from ratatoskr import ServiceClient, Message

    async with await ServiceClient.connect("127.0.0.1:9741") as client:
        reply = await client.chat([Message.user("hello")], model="gpt-4o-mini")
        print(reply.content)

The generated messages live in ``ratatoskr.v1`` (``chat_pb2``, ``inference_pb2``,
``models_pb2``, ``admin_pb2``); the helpers here build them.
"""

from ratatoskr.address import DEFAULT_ADDRESS
from ratatoskr.client import ServiceClient, batch_result, job_metadata, video_result
from ratatoskr.errors import (
    AuthenticationFailed,
    BudgetExceeded,
    CallerUnauthenticated,
    Cancelled,
    ConnectionFailed,
    ContentFiltered,
    ContextLengthExceeded,
    DeadlineExceeded,
    InternalError,
    InvalidInput,
    JobNotFinished,
    JobNotFound,
    ModelNotAllowed,
    ModelNotAvailable,
    ModelNotFound,
    ModelRetired,
    ModelUnpriced,
    NotImplementedByServer,
    Overloaded,
    PermissionDenied,
    PresetNotFound,
    QuotaExceeded,
    RatatoskrError,
    RateLimited,
    RoleRequired,
    StateUnavailable,
    TenantRateLimited,
    UnsupportedParameter,
)
from ratatoskr.helpers import (
    ChatOptions,
    ChatStreamCollector,
    GenerateOptions,
    Message,
    Part,
    ToolCall,
    ToolDefinition,
)
from ratatoskr.sync import SyncServiceClient
from ratatoskr.v1 import (
    admin_pb2,
    chat_pb2,
    inference_pb2,
    jobs_pb2,
    media_parts_pb2,
    media_pb2,
    models_pb2,
    ratatoskr_pb2,
)

__version__ = "0.1.0"

# Upstream names of the stream event messages.
ChatEvent = chat_pb2.ChatStreamResponse
GenerateEvent = chat_pb2.GenerateStreamResponse

__all__ = [
    "DEFAULT_ADDRESS",
    "AuthenticationFailed",
    "BudgetExceeded",
    "CallerUnauthenticated",
    "Cancelled",
    "ChatEvent",
    "ChatOptions",
    "ChatStreamCollector",
    "ConnectionFailed",
    "ContentFiltered",
    "ContextLengthExceeded",
    "DeadlineExceeded",
    "GenerateEvent",
    "GenerateOptions",
    "InternalError",
    "InvalidInput",
    "JobNotFinished",
    "JobNotFound",
    "Message",
    "ModelNotAllowed",
    "ModelNotAvailable",
    "ModelNotFound",
    "ModelRetired",
    "ModelUnpriced",
    "NotImplementedByServer",
    "Overloaded",
    "Part",
    "PermissionDenied",
    "PresetNotFound",
    "QuotaExceeded",
    "RatatoskrError",
    "RateLimited",
    "RoleRequired",
    "ServiceClient",
    "StateUnavailable",
    "SyncServiceClient",
    "TenantRateLimited",
    "ToolCall",
    "ToolDefinition",
    "UnsupportedParameter",
    "admin_pb2",
    "batch_result",
    "chat_pb2",
    "inference_pb2",
    "job_metadata",
    "jobs_pb2",
    "media_parts_pb2",
    "media_pb2",
    "models_pb2",
    "ratatoskr_pb2",
    "video_result",
]
