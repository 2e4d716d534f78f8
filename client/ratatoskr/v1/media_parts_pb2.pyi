from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class DocumentPart(_message.Message):
    __slots__ = ("url", "data", "mime_type", "filename", "citations", "title")
    URL_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    CITATIONS_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    url: str
    data: bytes
    mime_type: str
    filename: str
    citations: bool
    title: str
    def __init__(self, url: _Optional[str] = ..., data: _Optional[bytes] = ..., mime_type: _Optional[str] = ..., filename: _Optional[str] = ..., citations: _Optional[bool] = ..., title: _Optional[str] = ...) -> None: ...

class AudioPart(_message.Message):
    __slots__ = ("url", "data", "mime_type")
    URL_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    url: str
    data: bytes
    mime_type: str
    def __init__(self, url: _Optional[str] = ..., data: _Optional[bytes] = ..., mime_type: _Optional[str] = ...) -> None: ...

class VideoPart(_message.Message):
    __slots__ = ("url", "data", "mime_type")
    URL_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    url: str
    data: bytes
    mime_type: str
    def __init__(self, url: _Optional[str] = ..., data: _Optional[bytes] = ..., mime_type: _Optional[str] = ...) -> None: ...

class Citation(_message.Message):
    __slots__ = ("cited_text", "document_index", "document_title", "start_page", "end_page", "start_char", "end_char")
    CITED_TEXT_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_INDEX_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_TITLE_FIELD_NUMBER: _ClassVar[int]
    START_PAGE_FIELD_NUMBER: _ClassVar[int]
    END_PAGE_FIELD_NUMBER: _ClassVar[int]
    START_CHAR_FIELD_NUMBER: _ClassVar[int]
    END_CHAR_FIELD_NUMBER: _ClassVar[int]
    cited_text: str
    document_index: int
    document_title: str
    start_page: int
    end_page: int
    start_char: int
    end_char: int
    def __init__(self, cited_text: _Optional[str] = ..., document_index: _Optional[int] = ..., document_title: _Optional[str] = ..., start_page: _Optional[int] = ..., end_page: _Optional[int] = ..., start_char: _Optional[int] = ..., end_char: _Optional[int] = ...) -> None: ...
