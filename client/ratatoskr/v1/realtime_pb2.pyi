from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RealtimeModality(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REALTIME_MODALITY_UNSPECIFIED: _ClassVar[RealtimeModality]
    REALTIME_MODALITY_TEXT: _ClassVar[RealtimeModality]
    REALTIME_MODALITY_AUDIO: _ClassVar[RealtimeModality]

class RealtimeAudioFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REALTIME_AUDIO_FORMAT_UNSPECIFIED: _ClassVar[RealtimeAudioFormat]
    REALTIME_AUDIO_FORMAT_PCM16: _ClassVar[RealtimeAudioFormat]
    REALTIME_AUDIO_FORMAT_G711_ULAW: _ClassVar[RealtimeAudioFormat]
    REALTIME_AUDIO_FORMAT_G711_ALAW: _ClassVar[RealtimeAudioFormat]

class RealtimeTurnDetectionMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REALTIME_TURN_DETECTION_MODE_UNSPECIFIED: _ClassVar[RealtimeTurnDetectionMode]
    REALTIME_TURN_DETECTION_MODE_SERVER_VAD: _ClassVar[RealtimeTurnDetectionMode]
    REALTIME_TURN_DETECTION_MODE_SEMANTIC_VAD: _ClassVar[RealtimeTurnDetectionMode]
    REALTIME_TURN_DETECTION_MODE_NONE: _ClassVar[RealtimeTurnDetectionMode]

class RealtimeResponseStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REALTIME_RESPONSE_STATUS_UNSPECIFIED: _ClassVar[RealtimeResponseStatus]
    REALTIME_RESPONSE_STATUS_COMPLETED: _ClassVar[RealtimeResponseStatus]
    REALTIME_RESPONSE_STATUS_CANCELLED: _ClassVar[RealtimeResponseStatus]
    REALTIME_RESPONSE_STATUS_INCOMPLETE: _ClassVar[RealtimeResponseStatus]
    REALTIME_RESPONSE_STATUS_FAILED: _ClassVar[RealtimeResponseStatus]
REALTIME_MODALITY_UNSPECIFIED: RealtimeModality
REALTIME_MODALITY_TEXT: RealtimeModality
REALTIME_MODALITY_AUDIO: RealtimeModality
REALTIME_AUDIO_FORMAT_UNSPECIFIED: RealtimeAudioFormat
REALTIME_AUDIO_FORMAT_PCM16: RealtimeAudioFormat
REALTIME_AUDIO_FORMAT_G711_ULAW: RealtimeAudioFormat
REALTIME_AUDIO_FORMAT_G711_ALAW: RealtimeAudioFormat
REALTIME_TURN_DETECTION_MODE_UNSPECIFIED: RealtimeTurnDetectionMode
REALTIME_TURN_DETECTION_MODE_SERVER_VAD: RealtimeTurnDetectionMode
REALTIME_TURN_DETECTION_MODE_SEMANTIC_VAD: RealtimeTurnDetectionMode
REALTIME_TURN_DETECTION_MODE_NONE: RealtimeTurnDetectionMode
REALTIME_RESPONSE_STATUS_UNSPECIFIED: RealtimeResponseStatus
REALTIME_RESPONSE_STATUS_COMPLETED: RealtimeResponseStatus
REALTIME_RESPONSE_STATUS_CANCELLED: RealtimeResponseStatus
REALTIME_RESPONSE_STATUS_INCOMPLETE: RealtimeResponseStatus
REALTIME_RESPONSE_STATUS_FAILED: RealtimeResponseStatus

class RealtimeTurnDetection(_message.Message):
    __slots__ = ("mode", "threshold", "silence_duration_ms", "prefix_padding_ms")
    MODE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SILENCE_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    PREFIX_PADDING_MS_FIELD_NUMBER: _ClassVar[int]
    mode: RealtimeTurnDetectionMode
    threshold: float
    silence_duration_ms: int
    prefix_padding_ms: int
    def __init__(self, mode: _Optional[_Union[RealtimeTurnDetectionMode, str]] = ..., threshold: _Optional[float] = ..., silence_duration_ms: _Optional[int] = ..., prefix_padding_ms: _Optional[int] = ...) -> None: ...

class RealtimeTool(_message.Message):
    __slots__ = ("name", "description", "parameters_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    parameters_json: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., parameters_json: _Optional[str] = ...) -> None: ...

class RealtimeSessionConfig(_message.Message):
    __slots__ = ("model", "voice", "output_modalities", "instructions", "input_audio_format", "output_audio_format", "turn_detection", "tools", "transcribe_input", "temperature")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VOICE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_MODALITIES_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    INPUT_AUDIO_FORMAT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_AUDIO_FORMAT_FIELD_NUMBER: _ClassVar[int]
    TURN_DETECTION_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    TRANSCRIBE_INPUT_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    model: str
    voice: str
    output_modalities: _containers.RepeatedScalarFieldContainer[RealtimeModality]
    instructions: str
    input_audio_format: RealtimeAudioFormat
    output_audio_format: RealtimeAudioFormat
    turn_detection: RealtimeTurnDetection
    tools: _containers.RepeatedCompositeFieldContainer[RealtimeTool]
    transcribe_input: bool
    temperature: float
    def __init__(self, model: _Optional[str] = ..., voice: _Optional[str] = ..., output_modalities: _Optional[_Iterable[_Union[RealtimeModality, str]]] = ..., instructions: _Optional[str] = ..., input_audio_format: _Optional[_Union[RealtimeAudioFormat, str]] = ..., output_audio_format: _Optional[_Union[RealtimeAudioFormat, str]] = ..., turn_detection: _Optional[_Union[RealtimeTurnDetection, _Mapping]] = ..., tools: _Optional[_Iterable[_Union[RealtimeTool, _Mapping]]] = ..., transcribe_input: _Optional[bool] = ..., temperature: _Optional[float] = ...) -> None: ...

class RealtimeCommit(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RealtimeResponseCreate(_message.Message):
    __slots__ = ("instructions",)
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    instructions: str
    def __init__(self, instructions: _Optional[str] = ...) -> None: ...

class RealtimeResponseCancel(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RealtimeToolResult(_message.Message):
    __slots__ = ("call_id", "name", "output_json")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    name: str
    output_json: str
    def __init__(self, call_id: _Optional[str] = ..., name: _Optional[str] = ..., output_json: _Optional[str] = ...) -> None: ...

class RealtimeRequest(_message.Message):
    __slots__ = ("session", "audio", "commit", "text", "response_create", "response_cancel", "tool_result")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_CREATE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_CANCEL_FIELD_NUMBER: _ClassVar[int]
    TOOL_RESULT_FIELD_NUMBER: _ClassVar[int]
    session: RealtimeSessionConfig
    audio: bytes
    commit: RealtimeCommit
    text: str
    response_create: RealtimeResponseCreate
    response_cancel: RealtimeResponseCancel
    tool_result: RealtimeToolResult
    def __init__(self, session: _Optional[_Union[RealtimeSessionConfig, _Mapping]] = ..., audio: _Optional[bytes] = ..., commit: _Optional[_Union[RealtimeCommit, _Mapping]] = ..., text: _Optional[str] = ..., response_create: _Optional[_Union[RealtimeResponseCreate, _Mapping]] = ..., response_cancel: _Optional[_Union[RealtimeResponseCancel, _Mapping]] = ..., tool_result: _Optional[_Union[RealtimeToolResult, _Mapping]] = ...) -> None: ...

class RealtimeSessionCreated(_message.Message):
    __slots__ = ("provider", "model", "session_id", "input_sample_rate_hz", "output_sample_rate_hz")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    session_id: str
    input_sample_rate_hz: int
    output_sample_rate_hz: int
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ..., session_id: _Optional[str] = ..., input_sample_rate_hz: _Optional[int] = ..., output_sample_rate_hz: _Optional[int] = ...) -> None: ...

class RealtimeAudioDelta(_message.Message):
    __slots__ = ("data", "response_id")
    DATA_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    response_id: str
    def __init__(self, data: _Optional[bytes] = ..., response_id: _Optional[str] = ...) -> None: ...

class RealtimeTextDelta(_message.Message):
    __slots__ = ("text", "response_id")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    text: str
    response_id: str
    def __init__(self, text: _Optional[str] = ..., response_id: _Optional[str] = ...) -> None: ...

class RealtimeToolCall(_message.Message):
    __slots__ = ("call_id", "name", "arguments_json", "response_id")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    name: str
    arguments_json: str
    response_id: str
    def __init__(self, call_id: _Optional[str] = ..., name: _Optional[str] = ..., arguments_json: _Optional[str] = ..., response_id: _Optional[str] = ...) -> None: ...

class RealtimeUsage(_message.Message):
    __slots__ = ("input_tokens", "output_tokens", "input_audio_tokens", "output_audio_tokens", "cached_tokens", "cost_usd")
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    INPUT_AUDIO_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_AUDIO_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    input_tokens: int
    output_tokens: int
    input_audio_tokens: int
    output_audio_tokens: int
    cached_tokens: int
    cost_usd: float
    def __init__(self, input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., input_audio_tokens: _Optional[int] = ..., output_audio_tokens: _Optional[int] = ..., cached_tokens: _Optional[int] = ..., cost_usd: _Optional[float] = ...) -> None: ...

class RealtimeResponseDone(_message.Message):
    __slots__ = ("response_id", "status", "usage")
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    response_id: str
    status: RealtimeResponseStatus
    usage: RealtimeUsage
    def __init__(self, response_id: _Optional[str] = ..., status: _Optional[_Union[RealtimeResponseStatus, str]] = ..., usage: _Optional[_Union[RealtimeUsage, _Mapping]] = ...) -> None: ...

class RealtimeError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class RealtimeSpeechStarted(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RealtimeSessionEnded(_message.Message):
    __slots__ = ("usage",)
    USAGE_FIELD_NUMBER: _ClassVar[int]
    usage: RealtimeUsage
    def __init__(self, usage: _Optional[_Union[RealtimeUsage, _Mapping]] = ...) -> None: ...

class RealtimeResponse(_message.Message):
    __slots__ = ("session_created", "audio_delta", "text_delta", "input_transcript_delta", "output_transcript_delta", "tool_call", "response_done", "error", "speech_started", "session_ended")
    SESSION_CREATED_FIELD_NUMBER: _ClassVar[int]
    AUDIO_DELTA_FIELD_NUMBER: _ClassVar[int]
    TEXT_DELTA_FIELD_NUMBER: _ClassVar[int]
    INPUT_TRANSCRIPT_DELTA_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TRANSCRIPT_DELTA_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_DONE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SPEECH_STARTED_FIELD_NUMBER: _ClassVar[int]
    SESSION_ENDED_FIELD_NUMBER: _ClassVar[int]
    session_created: RealtimeSessionCreated
    audio_delta: RealtimeAudioDelta
    text_delta: RealtimeTextDelta
    input_transcript_delta: RealtimeTextDelta
    output_transcript_delta: RealtimeTextDelta
    tool_call: RealtimeToolCall
    response_done: RealtimeResponseDone
    error: RealtimeError
    speech_started: RealtimeSpeechStarted
    session_ended: RealtimeSessionEnded
    def __init__(self, session_created: _Optional[_Union[RealtimeSessionCreated, _Mapping]] = ..., audio_delta: _Optional[_Union[RealtimeAudioDelta, _Mapping]] = ..., text_delta: _Optional[_Union[RealtimeTextDelta, _Mapping]] = ..., input_transcript_delta: _Optional[_Union[RealtimeTextDelta, _Mapping]] = ..., output_transcript_delta: _Optional[_Union[RealtimeTextDelta, _Mapping]] = ..., tool_call: _Optional[_Union[RealtimeToolCall, _Mapping]] = ..., response_done: _Optional[_Union[RealtimeResponseDone, _Mapping]] = ..., error: _Optional[_Union[RealtimeError, _Mapping]] = ..., speech_started: _Optional[_Union[RealtimeSpeechStarted, _Mapping]] = ..., session_ended: _Optional[_Union[RealtimeSessionEnded, _Mapping]] = ...) -> None: ...
