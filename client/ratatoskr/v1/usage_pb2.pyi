from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UsageGroupBy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USAGE_GROUP_BY_UNSPECIFIED: _ClassVar[UsageGroupBy]
    USAGE_GROUP_BY_MODEL: _ClassVar[UsageGroupBy]
    USAGE_GROUP_BY_PROVIDER: _ClassVar[UsageGroupBy]
    USAGE_GROUP_BY_USER: _ClassVar[UsageGroupBy]
USAGE_GROUP_BY_UNSPECIFIED: UsageGroupBy
USAGE_GROUP_BY_MODEL: UsageGroupBy
USAGE_GROUP_BY_PROVIDER: UsageGroupBy
USAGE_GROUP_BY_USER: UsageGroupBy

class GetUsageRequest(_message.Message):
    __slots__ = ("tenant", "start_unix", "end_unix", "group_by")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    START_UNIX_FIELD_NUMBER: _ClassVar[int]
    END_UNIX_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    start_unix: int
    end_unix: int
    group_by: UsageGroupBy
    def __init__(self, tenant: _Optional[str] = ..., start_unix: _Optional[int] = ..., end_unix: _Optional[int] = ..., group_by: _Optional[_Union[UsageGroupBy, str]] = ...) -> None: ...

class UsageRow(_message.Message):
    __slots__ = ("tenant", "key", "requests", "prompt_tokens", "completion_tokens", "cost_usd")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    key: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    def __init__(self, tenant: _Optional[str] = ..., key: _Optional[str] = ..., requests: _Optional[int] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., cost_usd: _Optional[float] = ...) -> None: ...

class GetUsageResponse(_message.Message):
    __slots__ = ("rows", "start_unix", "end_unix")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    START_UNIX_FIELD_NUMBER: _ClassVar[int]
    END_UNIX_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[UsageRow]
    start_unix: int
    end_unix: int
    def __init__(self, rows: _Optional[_Iterable[_Union[UsageRow, _Mapping]]] = ..., start_unix: _Optional[int] = ..., end_unix: _Optional[int] = ...) -> None: ...
