from ratatoskr.v1 import chat_pb2 as _chat_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GenerateImageRequest(_message.Message):
    __slots__ = ("model", "prompt", "size", "quality", "count", "input_images", "mask", "output_format")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    INPUT_IMAGES_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    model: str
    prompt: str
    size: str
    quality: str
    count: int
    input_images: _containers.RepeatedCompositeFieldContainer[_chat_pb2.ImagePart]
    mask: _chat_pb2.ImagePart
    output_format: str
    def __init__(self, model: _Optional[str] = ..., prompt: _Optional[str] = ..., size: _Optional[str] = ..., quality: _Optional[str] = ..., count: _Optional[int] = ..., input_images: _Optional[_Iterable[_Union[_chat_pb2.ImagePart, _Mapping]]] = ..., mask: _Optional[_Union[_chat_pb2.ImagePart, _Mapping]] = ..., output_format: _Optional[str] = ...) -> None: ...

class GeneratedImage(_message.Message):
    __slots__ = ("data", "mime_type", "revised_prompt")
    DATA_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    REVISED_PROMPT_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    mime_type: str
    revised_prompt: str
    def __init__(self, data: _Optional[bytes] = ..., mime_type: _Optional[str] = ..., revised_prompt: _Optional[str] = ...) -> None: ...

class GenerateImageResponse(_message.Message):
    __slots__ = ("images", "usage", "model", "provider", "text")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[GeneratedImage]
    usage: _chat_pb2.Usage
    model: str
    provider: str
    text: str
    def __init__(self, images: _Optional[_Iterable[_Union[GeneratedImage, _Mapping]]] = ..., usage: _Optional[_Union[_chat_pb2.Usage, _Mapping]] = ..., model: _Optional[str] = ..., provider: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class TranscribeRequest(_message.Message):
    __slots__ = ("model", "audio", "mime_type", "language", "timestamps", "prompt", "temperature")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    model: str
    audio: bytes
    mime_type: str
    language: str
    timestamps: bool
    prompt: str
    temperature: float
    def __init__(self, model: _Optional[str] = ..., audio: _Optional[bytes] = ..., mime_type: _Optional[str] = ..., language: _Optional[str] = ..., timestamps: _Optional[bool] = ..., prompt: _Optional[str] = ..., temperature: _Optional[float] = ...) -> None: ...

class TranscriptSegment(_message.Message):
    __slots__ = ("start_secs", "end_secs", "text")
    START_SECS_FIELD_NUMBER: _ClassVar[int]
    END_SECS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    start_secs: float
    end_secs: float
    text: str
    def __init__(self, start_secs: _Optional[float] = ..., end_secs: _Optional[float] = ..., text: _Optional[str] = ...) -> None: ...

class TranscribeResponse(_message.Message):
    __slots__ = ("text", "language", "segments", "duration_secs", "usage", "model", "provider")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    text: str
    language: str
    segments: _containers.RepeatedCompositeFieldContainer[TranscriptSegment]
    duration_secs: float
    usage: _chat_pb2.Usage
    model: str
    provider: str
    def __init__(self, text: _Optional[str] = ..., language: _Optional[str] = ..., segments: _Optional[_Iterable[_Union[TranscriptSegment, _Mapping]]] = ..., duration_secs: _Optional[float] = ..., usage: _Optional[_Union[_chat_pb2.Usage, _Mapping]] = ..., model: _Optional[str] = ..., provider: _Optional[str] = ...) -> None: ...

class TranscribeStreamRequest(_message.Message):
    __slots__ = ("config", "audio")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    config: TranscribeRequest
    audio: bytes
    def __init__(self, config: _Optional[_Union[TranscribeRequest, _Mapping]] = ..., audio: _Optional[bytes] = ...) -> None: ...

class TranscribeStreamResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: TranscribeResponse
    def __init__(self, result: _Optional[_Union[TranscribeResponse, _Mapping]] = ...) -> None: ...

class SynthesizeRequest(_message.Message):
    __slots__ = ("model", "text", "voice", "format", "speed", "instructions")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    VOICE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SPEED_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    model: str
    text: str
    voice: str
    format: str
    speed: float
    instructions: str
    def __init__(self, model: _Optional[str] = ..., text: _Optional[str] = ..., voice: _Optional[str] = ..., format: _Optional[str] = ..., speed: _Optional[float] = ..., instructions: _Optional[str] = ...) -> None: ...

class SynthesizeResponse(_message.Message):
    __slots__ = ("audio", "mime_type", "done", "model", "provider", "usage")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    audio: bytes
    mime_type: str
    done: bool
    model: str
    provider: str
    usage: _chat_pb2.Usage
    def __init__(self, audio: _Optional[bytes] = ..., mime_type: _Optional[str] = ..., done: _Optional[bool] = ..., model: _Optional[str] = ..., provider: _Optional[str] = ..., usage: _Optional[_Union[_chat_pb2.Usage, _Mapping]] = ...) -> None: ...
