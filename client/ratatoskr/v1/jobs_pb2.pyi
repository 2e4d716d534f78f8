import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from ratatoskr.v1 import chat_pb2 as _chat_pb2
from ratatoskr.v1 import inference_pb2 as _inference_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState

class JobMetadata(_message.Message):
    __slots__ = ("kind", "tenant", "state", "create_time", "update_time", "total", "completed", "failed", "progress", "provider", "display_name", "model", "upstream_status")
    KIND_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_STATUS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    tenant: str
    state: JobState
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    total: int
    completed: int
    failed: int
    progress: float
    provider: str
    display_name: str
    model: str
    upstream_status: str
    def __init__(self, kind: _Optional[str] = ..., tenant: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., total: _Optional[int] = ..., completed: _Optional[int] = ..., failed: _Optional[int] = ..., progress: _Optional[float] = ..., provider: _Optional[str] = ..., display_name: _Optional[str] = ..., model: _Optional[str] = ..., upstream_status: _Optional[str] = ...) -> None: ...

class BatchItem(_message.Message):
    __slots__ = ("custom_id", "chat", "embed")
    CUSTOM_ID_FIELD_NUMBER: _ClassVar[int]
    CHAT_FIELD_NUMBER: _ClassVar[int]
    EMBED_FIELD_NUMBER: _ClassVar[int]
    custom_id: str
    chat: _chat_pb2.ChatRequest
    embed: _inference_pb2.EmbedRequest
    def __init__(self, custom_id: _Optional[str] = ..., chat: _Optional[_Union[_chat_pb2.ChatRequest, _Mapping]] = ..., embed: _Optional[_Union[_inference_pb2.EmbedRequest, _Mapping]] = ...) -> None: ...

class SubmitBatchRequest(_message.Message):
    __slots__ = ("items", "concurrency", "display_name", "provider")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[BatchItem]
    concurrency: int
    display_name: str
    provider: str
    def __init__(self, items: _Optional[_Iterable[_Union[BatchItem, _Mapping]]] = ..., concurrency: _Optional[int] = ..., display_name: _Optional[str] = ..., provider: _Optional[str] = ...) -> None: ...

class SubmitBatchResponse(_message.Message):
    __slots__ = ("name", "metadata")
    NAME_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    metadata: JobMetadata
    def __init__(self, name: _Optional[str] = ..., metadata: _Optional[_Union[JobMetadata, _Mapping]] = ...) -> None: ...

class BatchItemError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class BatchItemResult(_message.Message):
    __slots__ = ("custom_id", "chat", "embed", "error")
    CUSTOM_ID_FIELD_NUMBER: _ClassVar[int]
    CHAT_FIELD_NUMBER: _ClassVar[int]
    EMBED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    custom_id: str
    chat: _chat_pb2.ChatResponse
    embed: _inference_pb2.EmbedResponse
    error: BatchItemError
    def __init__(self, custom_id: _Optional[str] = ..., chat: _Optional[_Union[_chat_pb2.ChatResponse, _Mapping]] = ..., embed: _Optional[_Union[_inference_pb2.EmbedResponse, _Mapping]] = ..., error: _Optional[_Union[BatchItemError, _Mapping]] = ...) -> None: ...

class BatchResult(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BatchItemResult]
    def __init__(self, results: _Optional[_Iterable[_Union[BatchItemResult, _Mapping]]] = ...) -> None: ...

class GenerateVideoRequest(_message.Message):
    __slots__ = ("prompt", "model", "display_name")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    model: str
    display_name: str
    def __init__(self, prompt: _Optional[str] = ..., model: _Optional[str] = ..., display_name: _Optional[str] = ...) -> None: ...

class GenerateVideoResponse(_message.Message):
    __slots__ = ("name", "metadata")
    NAME_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    metadata: JobMetadata
    def __init__(self, name: _Optional[str] = ..., metadata: _Optional[_Union[JobMetadata, _Mapping]] = ...) -> None: ...

class GeneratedVideo(_message.Message):
    __slots__ = ("data", "mime_type", "uri")
    DATA_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    mime_type: str
    uri: str
    def __init__(self, data: _Optional[bytes] = ..., mime_type: _Optional[str] = ..., uri: _Optional[str] = ...) -> None: ...

class VideoResult(_message.Message):
    __slots__ = ("videos", "model")
    VIDEOS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    videos: _containers.RepeatedCompositeFieldContainer[GeneratedVideo]
    model: str
    def __init__(self, videos: _Optional[_Iterable[_Union[GeneratedVideo, _Mapping]]] = ..., model: _Optional[str] = ...) -> None: ...
