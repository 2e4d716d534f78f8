from ratatoskr.v1 import chat_pb2 as _chat_pb2
from ratatoskr.v1 import inference_pb2 as _inference_pb2
from ratatoskr.v1 import media_pb2 as _media_pb2
from ratatoskr.v1 import jobs_pb2 as _jobs_pb2
from ratatoskr.v1 import models_pb2 as _models_pb2
from ratatoskr.v1 import realtime_pb2 as _realtime_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class HealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthResponse(_message.Message):
    __slots__ = ("healthy", "version", "git_sha", "state_backend_up")
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    GIT_SHA_FIELD_NUMBER: _ClassVar[int]
    STATE_BACKEND_UP_FIELD_NUMBER: _ClassVar[int]
    healthy: bool
    version: str
    git_sha: str
    state_backend_up: bool
    def __init__(self, healthy: _Optional[bool] = ..., version: _Optional[str] = ..., git_sha: _Optional[str] = ..., state_backend_up: _Optional[bool] = ...) -> None: ...
