"""Reading OpenAI request bodies: each field checked for its JSON type, with the errors
OpenAI itself gives (400 invalid_request_error naming the ``param``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ratd.errors import InvalidInput

Body = Mapping[str, Any]


def bad(param: str, message: str) -> InvalidInput:
    return InvalidInput(f"{param}: {message}", field=param)


def check_keys(body: Body, known: frozenset[str]) -> None:
    """OpenAI answers an argument it does not know with 400; so does ratd, rather than
    silently dropping what the caller meant to send."""
    for key in body:
        if key not in known:
            raise InvalidInput(f"Unrecognized request argument supplied: {key}", field=key)


def required_string(body: Body, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise bad(key, "a non-empty string is required")
    return value


def optional_string(body: Body, key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise bad(key, "must be a string")
    return value


def number(body: Body, key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad(key, "must be a number")
    return float(value)


def integer(body: Body, key: str, minimum: int = 0) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise bad(key, f"must be an integer >= {minimum}")
    return value


def boolean(body: Body, key: str) -> bool | None:
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise bad(key, "must be a boolean")
    return value


def stop_sequences(body: Body, key: str = "stop") -> list[str]:
    value = body.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise bad(key, "must be a string or an array of strings")


def only_one(body: Body, key: str = "n") -> None:
    """ratd answers with one choice; ``n`` > 1 is refused, not half-served."""
    n = integer(body, key, minimum=1)
    if n not in (None, 1):
        raise bad(key, "ratd returns one choice per request; n must be 1")


def falsy(body: Body, keys: Iterable[str]) -> None:
    """Options ratd does not serve are accepted only when they ask for nothing."""
    for key in keys:
        if body.get(key):
            raise bad(key, "is not supported by ratd")


def include_usage(body: Body, stream: bool) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise bad("stream_options", "must be an object")
    if not stream:
        raise bad("stream_options", "is only allowed when stream is true")
    value = options.get("include_usage", False)
    if not isinstance(value, bool):
        raise bad("stream_options.include_usage", "must be a boolean")
    return value
