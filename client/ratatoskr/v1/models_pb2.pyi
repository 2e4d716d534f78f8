import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelCapability(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_CAPABILITY_UNSPECIFIED: _ClassVar[ModelCapability]
    MODEL_CAPABILITY_CHAT: _ClassVar[ModelCapability]
    MODEL_CAPABILITY_GENERATE: _ClassVar[ModelCapability]
    MODEL_CAPABILITY_EMBED: _ClassVar[ModelCapability]
    MODEL_CAPABILITY_NLI: _ClassVar[ModelCapability]
    MODEL_CAPABILITY_CLASSIFY: _ClassVar[ModelCapability]
    MODEL_CAPABILITY_STANCE: _ClassVar[ModelCapability]
    MODEL_CAPABILITY_CHAT_STREAMING: _ClassVar[ModelCapability]
    MODEL_CAPABILITY_TOOL_USE: _ClassVar[ModelCapability]
    MODEL_CAPABILITY_TOKEN_COUNTING: _ClassVar[ModelCapability]
    MODEL_CAPABILITY_LOCAL_INFERENCE: _ClassVar[ModelCapability]
    MODEL_CAPABILITY_REASONING: _ClassVar[ModelCapability]
    MODEL_CAPABILITY_VISION: _ClassVar[ModelCapability]
    MODEL_CAPABILITY_STRUCTURED_OUTPUT: _ClassVar[ModelCapability]
    MODEL_CAPABILITY_IMAGE_GENERATION: _ClassVar[ModelCapability]
    MODEL_CAPABILITY_SPEECH_TO_TEXT: _ClassVar[ModelCapability]
    MODEL_CAPABILITY_TEXT_TO_SPEECH: _ClassVar[ModelCapability]
    MODEL_CAPABILITY_DOCUMENT_INPUT: _ClassVar[ModelCapability]
    MODEL_CAPABILITY_AUDIO_INPUT: _ClassVar[ModelCapability]
    MODEL_CAPABILITY_VIDEO_INPUT: _ClassVar[ModelCapability]

class ModelStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_STATUS_UNSPECIFIED: _ClassVar[ModelStatus]
    MODEL_STATUS_AVAILABLE: _ClassVar[ModelStatus]
    MODEL_STATUS_LOADING: _ClassVar[ModelStatus]
    MODEL_STATUS_READY: _ClassVar[ModelStatus]
    MODEL_STATUS_UNAVAILABLE: _ClassVar[ModelStatus]
    MODEL_STATUS_UNLOADING: _ClassVar[ModelStatus]
MODEL_CAPABILITY_UNSPECIFIED: ModelCapability
MODEL_CAPABILITY_CHAT: ModelCapability
MODEL_CAPABILITY_GENERATE: ModelCapability
MODEL_CAPABILITY_EMBED: ModelCapability
MODEL_CAPABILITY_NLI: ModelCapability
MODEL_CAPABILITY_CLASSIFY: ModelCapability
MODEL_CAPABILITY_STANCE: ModelCapability
MODEL_CAPABILITY_CHAT_STREAMING: ModelCapability
MODEL_CAPABILITY_TOOL_USE: ModelCapability
MODEL_CAPABILITY_TOKEN_COUNTING: ModelCapability
MODEL_CAPABILITY_LOCAL_INFERENCE: ModelCapability
MODEL_CAPABILITY_REASONING: ModelCapability
MODEL_CAPABILITY_VISION: ModelCapability
MODEL_CAPABILITY_STRUCTURED_OUTPUT: ModelCapability
MODEL_CAPABILITY_IMAGE_GENERATION: ModelCapability
MODEL_CAPABILITY_SPEECH_TO_TEXT: ModelCapability
MODEL_CAPABILITY_TEXT_TO_SPEECH: ModelCapability
MODEL_CAPABILITY_DOCUMENT_INPUT: ModelCapability
MODEL_CAPABILITY_AUDIO_INPUT: ModelCapability
MODEL_CAPABILITY_VIDEO_INPUT: ModelCapability
MODEL_STATUS_UNSPECIFIED: ModelStatus
MODEL_STATUS_AVAILABLE: ModelStatus
MODEL_STATUS_LOADING: ModelStatus
MODEL_STATUS_READY: ModelStatus
MODEL_STATUS_UNAVAILABLE: ModelStatus
MODEL_STATUS_UNLOADING: ModelStatus

class ModelInfo(_message.Message):
    __slots__ = ("id", "provider", "capabilities", "context_window", "dimensions", "pricing", "max_output_tokens", "deprecation_date", "shutdown_date", "replacement")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_WINDOW_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    PRICING_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    DEPRECATION_DATE_FIELD_NUMBER: _ClassVar[int]
    SHUTDOWN_DATE_FIELD_NUMBER: _ClassVar[int]
    REPLACEMENT_FIELD_NUMBER: _ClassVar[int]
    id: str
    provider: str
    capabilities: _containers.RepeatedScalarFieldContainer[ModelCapability]
    context_window: int
    dimensions: int
    pricing: PricingInfo
    max_output_tokens: int
    deprecation_date: str
    shutdown_date: str
    replacement: str
    def __init__(self, id: _Optional[str] = ..., provider: _Optional[str] = ..., capabilities: _Optional[_Iterable[_Union[ModelCapability, str]]] = ..., context_window: _Optional[int] = ..., dimensions: _Optional[int] = ..., pricing: _Optional[_Union[PricingInfo, _Mapping]] = ..., max_output_tokens: _Optional[int] = ..., deprecation_date: _Optional[str] = ..., shutdown_date: _Optional[str] = ..., replacement: _Optional[str] = ...) -> None: ...

class PricingInfo(_message.Message):
    __slots__ = ("prompt_cost_per_mtok", "completion_cost_per_mtok")
    PROMPT_COST_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_COST_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    prompt_cost_per_mtok: float
    completion_cost_per_mtok: float
    def __init__(self, prompt_cost_per_mtok: _Optional[float] = ..., completion_cost_per_mtok: _Optional[float] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("provider",)
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    provider: str
    def __init__(self, provider: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class ModelStatusRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class ModelStatusResponse(_message.Message):
    __slots__ = ("status", "reason", "local")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LOCAL_FIELD_NUMBER: _ClassVar[int]
    status: ModelStatus
    reason: str
    local: LoadedModel
    def __init__(self, status: _Optional[_Union[ModelStatus, str]] = ..., reason: _Optional[str] = ..., local: _Optional[_Union[LoadedModel, _Mapping]] = ...) -> None: ...

class LoadedModel(_message.Message):
    __slots__ = ("name", "kind", "status", "bytes", "device", "last_used", "expires_at", "in_use", "pinned", "source")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    IN_USE_FIELD_NUMBER: _ClassVar[int]
    PINNED_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    status: ModelStatus
    bytes: int
    device: str
    last_used: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    in_use: int
    pinned: bool
    source: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., status: _Optional[_Union[ModelStatus, str]] = ..., bytes: _Optional[int] = ..., device: _Optional[str] = ..., last_used: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., in_use: _Optional[int] = ..., pinned: _Optional[bool] = ..., source: _Optional[str] = ...) -> None: ...

class GetModelMetadataRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class GetModelMetadataResponse(_message.Message):
    __slots__ = ("found", "metadata")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    found: bool
    metadata: ModelMetadata
    def __init__(self, found: _Optional[bool] = ..., metadata: _Optional[_Union[ModelMetadata, _Mapping]] = ...) -> None: ...

class FetchModelMetadataRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class FetchModelMetadataResponse(_message.Message):
    __slots__ = ("found", "metadata")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    found: bool
    metadata: ModelMetadata
    def __init__(self, found: _Optional[bool] = ..., metadata: _Optional[_Union[ModelMetadata, _Mapping]] = ...) -> None: ...

class ModelMetadata(_message.Message):
    __slots__ = ("info", "parameters", "pricing", "max_output_tokens")
    INFO_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    PRICING_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    info: ModelInfo
    parameters: _containers.RepeatedCompositeFieldContainer[ParameterEntry]
    pricing: PricingInfo
    max_output_tokens: int
    def __init__(self, info: _Optional[_Union[ModelInfo, _Mapping]] = ..., parameters: _Optional[_Iterable[_Union[ParameterEntry, _Mapping]]] = ..., pricing: _Optional[_Union[PricingInfo, _Mapping]] = ..., max_output_tokens: _Optional[int] = ...) -> None: ...

class ParameterEntry(_message.Message):
    __slots__ = ("name", "availability")
    NAME_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_FIELD_NUMBER: _ClassVar[int]
    name: str
    availability: ParameterAvailability
    def __init__(self, name: _Optional[str] = ..., availability: _Optional[_Union[ParameterAvailability, _Mapping]] = ...) -> None: ...

class ParameterAvailability(_message.Message):
    __slots__ = ("mutable_range", "read_only_json", "opaque", "unsupported")
    MUTABLE_RANGE_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_JSON_FIELD_NUMBER: _ClassVar[int]
    OPAQUE_FIELD_NUMBER: _ClassVar[int]
    UNSUPPORTED_FIELD_NUMBER: _ClassVar[int]
    mutable_range: ParameterRange
    read_only_json: str
    opaque: bool
    unsupported: bool
    def __init__(self, mutable_range: _Optional[_Union[ParameterRange, _Mapping]] = ..., read_only_json: _Optional[str] = ..., opaque: _Optional[bool] = ..., unsupported: _Optional[bool] = ...) -> None: ...

class ParameterRange(_message.Message):
    __slots__ = ("min", "max", "default_value")
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VALUE_FIELD_NUMBER: _ClassVar[int]
    min: float
    max: float
    default_value: float
    def __init__(self, min: _Optional[float] = ..., max: _Optional[float] = ..., default_value: _Optional[float] = ...) -> None: ...

class ResolvePresetRequest(_message.Message):
    __slots__ = ("tier", "capability")
    TIER_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    tier: str
    capability: str
    def __init__(self, tier: _Optional[str] = ..., capability: _Optional[str] = ...) -> None: ...

class PresetParameters(_message.Message):
    __slots__ = ("temperature", "top_p", "top_k", "max_tokens", "frequency_penalty", "presence_penalty", "seed", "stop")
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_PENALTY_FIELD_NUMBER: _ClassVar[int]
    PRESENCE_PENALTY_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    temperature: float
    top_p: float
    top_k: int
    max_tokens: int
    frequency_penalty: float
    presence_penalty: float
    seed: int
    stop: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., top_k: _Optional[int] = ..., max_tokens: _Optional[int] = ..., frequency_penalty: _Optional[float] = ..., presence_penalty: _Optional[float] = ..., seed: _Optional[int] = ..., stop: _Optional[_Iterable[str]] = ...) -> None: ...

class ResolvePresetResponse(_message.Message):
    __slots__ = ("found", "model_id", "parameters")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    found: bool
    model_id: str
    parameters: PresetParameters
    def __init__(self, found: _Optional[bool] = ..., model_id: _Optional[str] = ..., parameters: _Optional[_Union[PresetParameters, _Mapping]] = ...) -> None: ...

class PresetTierEntry(_message.Message):
    __slots__ = ("tier", "capabilities")
    TIER_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    tier: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tier: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ...) -> None: ...

class ListPresetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPresetsResponse(_message.Message):
    __slots__ = ("tiers",)
    TIERS_FIELD_NUMBER: _ClassVar[int]
    tiers: _containers.RepeatedCompositeFieldContainer[PresetTierEntry]
    def __init__(self, tiers: _Optional[_Iterable[_Union[PresetTierEntry, _Mapping]]] = ...) -> None: ...

class GetCapabilitiesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetCapabilitiesResponse(_message.Message):
    __slots__ = ("capabilities",)
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    capabilities: _containers.RepeatedScalarFieldContainer[ModelCapability]
    def __init__(self, capabilities: _Optional[_Iterable[_Union[ModelCapability, str]]] = ...) -> None: ...
