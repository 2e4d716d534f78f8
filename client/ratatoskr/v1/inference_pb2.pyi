from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NliLabel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NLI_LABEL_UNSPECIFIED: _ClassVar[NliLabel]
    NLI_LABEL_ENTAILMENT: _ClassVar[NliLabel]
    NLI_LABEL_CONTRADICTION: _ClassVar[NliLabel]
    NLI_LABEL_NEUTRAL: _ClassVar[NliLabel]

class StanceLabel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STANCE_LABEL_UNSPECIFIED: _ClassVar[StanceLabel]
    STANCE_LABEL_FAVOR: _ClassVar[StanceLabel]
    STANCE_LABEL_AGAINST: _ClassVar[StanceLabel]
    STANCE_LABEL_NEUTRAL: _ClassVar[StanceLabel]
NLI_LABEL_UNSPECIFIED: NliLabel
NLI_LABEL_ENTAILMENT: NliLabel
NLI_LABEL_CONTRADICTION: NliLabel
NLI_LABEL_NEUTRAL: NliLabel
STANCE_LABEL_UNSPECIFIED: StanceLabel
STANCE_LABEL_FAVOR: StanceLabel
STANCE_LABEL_AGAINST: StanceLabel
STANCE_LABEL_NEUTRAL: StanceLabel

class EmbedRequest(_message.Message):
    __slots__ = ("text", "model", "dimensions")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    text: str
    model: str
    dimensions: int
    def __init__(self, text: _Optional[str] = ..., model: _Optional[str] = ..., dimensions: _Optional[int] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("values", "model", "dimensions")
    VALUES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    model: str
    dimensions: int
    def __init__(self, values: _Optional[_Iterable[float]] = ..., model: _Optional[str] = ..., dimensions: _Optional[int] = ...) -> None: ...

class EmbedBatchRequest(_message.Message):
    __slots__ = ("texts", "model", "dimensions")
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    model: str
    dimensions: int
    def __init__(self, texts: _Optional[_Iterable[str]] = ..., model: _Optional[str] = ..., dimensions: _Optional[int] = ...) -> None: ...

class EmbedBatchResponse(_message.Message):
    __slots__ = ("embeddings",)
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    embeddings: _containers.RepeatedCompositeFieldContainer[Embedding]
    def __init__(self, embeddings: _Optional[_Iterable[_Union[Embedding, _Mapping]]] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("values", "model", "dimensions")
    VALUES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    model: str
    dimensions: int
    def __init__(self, values: _Optional[_Iterable[float]] = ..., model: _Optional[str] = ..., dimensions: _Optional[int] = ...) -> None: ...

class InferNliRequest(_message.Message):
    __slots__ = ("premise", "hypothesis", "model")
    PREMISE_FIELD_NUMBER: _ClassVar[int]
    HYPOTHESIS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    premise: str
    hypothesis: str
    model: str
    def __init__(self, premise: _Optional[str] = ..., hypothesis: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class InferNliResponse(_message.Message):
    __slots__ = ("entailment", "contradiction", "neutral", "label")
    ENTAILMENT_FIELD_NUMBER: _ClassVar[int]
    CONTRADICTION_FIELD_NUMBER: _ClassVar[int]
    NEUTRAL_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    entailment: float
    contradiction: float
    neutral: float
    label: NliLabel
    def __init__(self, entailment: _Optional[float] = ..., contradiction: _Optional[float] = ..., neutral: _Optional[float] = ..., label: _Optional[_Union[NliLabel, str]] = ...) -> None: ...

class NliPair(_message.Message):
    __slots__ = ("premise", "hypothesis")
    PREMISE_FIELD_NUMBER: _ClassVar[int]
    HYPOTHESIS_FIELD_NUMBER: _ClassVar[int]
    premise: str
    hypothesis: str
    def __init__(self, premise: _Optional[str] = ..., hypothesis: _Optional[str] = ...) -> None: ...

class InferNliBatchRequest(_message.Message):
    __slots__ = ("pairs", "model")
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    pairs: _containers.RepeatedCompositeFieldContainer[NliPair]
    model: str
    def __init__(self, pairs: _Optional[_Iterable[_Union[NliPair, _Mapping]]] = ..., model: _Optional[str] = ...) -> None: ...

class InferNliBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[NliResult]
    def __init__(self, results: _Optional[_Iterable[_Union[NliResult, _Mapping]]] = ...) -> None: ...

class NliResult(_message.Message):
    __slots__ = ("entailment", "contradiction", "neutral", "label")
    ENTAILMENT_FIELD_NUMBER: _ClassVar[int]
    CONTRADICTION_FIELD_NUMBER: _ClassVar[int]
    NEUTRAL_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    entailment: float
    contradiction: float
    neutral: float
    label: NliLabel
    def __init__(self, entailment: _Optional[float] = ..., contradiction: _Optional[float] = ..., neutral: _Optional[float] = ..., label: _Optional[_Union[NliLabel, str]] = ...) -> None: ...

class ClassifyZeroShotRequest(_message.Message):
    __slots__ = ("text", "labels", "model", "multi_label", "hypothesis_template")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MULTI_LABEL_FIELD_NUMBER: _ClassVar[int]
    HYPOTHESIS_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    text: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    model: str
    multi_label: bool
    hypothesis_template: str
    def __init__(self, text: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., model: _Optional[str] = ..., multi_label: _Optional[bool] = ..., hypothesis_template: _Optional[str] = ...) -> None: ...

class ClassifyZeroShotResponse(_message.Message):
    __slots__ = ("scores", "top_label", "confidence")
    class ScoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SCORES_FIELD_NUMBER: _ClassVar[int]
    TOP_LABEL_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    scores: _containers.ScalarMap[str, float]
    top_label: str
    confidence: float
    def __init__(self, scores: _Optional[_Mapping[str, float]] = ..., top_label: _Optional[str] = ..., confidence: _Optional[float] = ...) -> None: ...

class ClassifyStanceRequest(_message.Message):
    __slots__ = ("text", "target", "model")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    text: str
    target: str
    model: str
    def __init__(self, text: _Optional[str] = ..., target: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class ClassifyStanceResponse(_message.Message):
    __slots__ = ("favor", "against", "neutral", "label", "target")
    FAVOR_FIELD_NUMBER: _ClassVar[int]
    AGAINST_FIELD_NUMBER: _ClassVar[int]
    NEUTRAL_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    favor: float
    against: float
    neutral: float
    label: StanceLabel
    target: str
    def __init__(self, favor: _Optional[float] = ..., against: _Optional[float] = ..., neutral: _Optional[float] = ..., label: _Optional[_Union[StanceLabel, str]] = ..., target: _Optional[str] = ...) -> None: ...

class CountTokensRequest(_message.Message):
    __slots__ = ("text", "model")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    text: str
    model: str
    def __init__(self, text: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class CountTokensResponse(_message.Message):
    __slots__ = ("count", "tokenizer", "approximate")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_FIELD_NUMBER: _ClassVar[int]
    APPROXIMATE_FIELD_NUMBER: _ClassVar[int]
    count: int
    tokenizer: str
    approximate: bool
    def __init__(self, count: _Optional[int] = ..., tokenizer: _Optional[str] = ..., approximate: _Optional[bool] = ...) -> None: ...

class TokenizeRequest(_message.Message):
    __slots__ = ("text", "model")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    text: str
    model: str
    def __init__(self, text: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class TokenizeResponse(_message.Message):
    __slots__ = ("tokens", "tokenizer", "approximate")
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_FIELD_NUMBER: _ClassVar[int]
    APPROXIMATE_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[Token]
    tokenizer: str
    approximate: bool
    def __init__(self, tokens: _Optional[_Iterable[_Union[Token, _Mapping]]] = ..., tokenizer: _Optional[str] = ..., approximate: _Optional[bool] = ...) -> None: ...

class Token(_message.Message):
    __slots__ = ("id", "text", "start", "end")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    id: int
    text: str
    start: int
    end: int
    def __init__(self, id: _Optional[int] = ..., text: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...
