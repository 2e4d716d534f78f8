"""The streaming decoders (SSE, NDJSON lines) and the retry-hint parser, on their own."""

from __future__ import annotations

import email.utils
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from ratd.providers.http import retry_after_from_headers
from ratd.providers.streams import LineDecoder, SseDecoder, SseEvent


def decode(chunks: list[bytes]) -> list[SseEvent]:
    decoder = SseDecoder()
    events: list[SseEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    events.extend(decoder.close())
    return events


# An OpenRouter-like stream with everything a decoder must cope with: comment lines before
# and between events, \n and \r\n separators, multi-line data, an event name, "data:"
# without the space, a field with no colon, non-ASCII text, and no blank line at the end.
STREAM = (
    b": OPENROUTER PROCESSING\n\n"
    b'data: {"content":"Ratatoskr"}\n\n'
    b": OPENROUTER PROCESSING\r\n\r\n"
    b'data: {"content":" Ni\xc3\xb0h\xc3\xb6ggr"}\r\n\r\n'
    b"event: error\n"
    b"data: first line\n"
    b"data:second line\n\n"
    b"id: 7\nretry: 100\ndata\n\n"
    b"data: [DONE]"
)
EXPECTED = [
    SseEvent("message", '{"content":"Ratatoskr"}'),
    SseEvent("message", '{"content":" Niðhöggr"}'),
    SseEvent("error", "first line\nsecond line"),
    SseEvent("message", ""),
    SseEvent("message", "[DONE]"),
]


def test_sse_whole() -> None:
    assert decode([STREAM]) == EXPECTED


@pytest.mark.parametrize("cut", range(len(STREAM) + 1))
def test_sse_split_at_every_byte(cut: int) -> None:
    assert decode([STREAM[:cut], STREAM[cut:]]) == EXPECTED


def test_sse_split_at_every_pair_of_bytes() -> None:
    for first in range(0, len(STREAM) + 1, 3):
        for second in range(first, len(STREAM) + 1):
            assert decode([STREAM[:first], STREAM[first:second], STREAM[second:]]) == EXPECTED, (
                first,
                second,
            )


def test_sse_one_byte_at_a_time() -> None:
    assert decode([STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED


def test_sse_events_come_out_as_soon_as_complete() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b'data: {"a":1}\n') == []
    assert decoder.feed(b"\n") == [SseEvent("message", '{"a":1}')]
    assert decoder.feed(b": keep-alive\n\ndata: x") == []
    assert decoder.close() == [SseEvent("message", "x")]
    assert decoder.close() == []


def test_sse_crlf_split_between_cr_and_lf() -> None:
    assert decode([b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n"]) == [
        SseEvent("message", "a"),
        SseEvent("message", "b"),
    ]


def test_sse_comment_only_stream_has_no_events() -> None:
    assert decode([b": OPENROUTER PROCESSING\n\n" * 17]) == []


def test_sse_event_name_resets_after_each_event() -> None:
    assert decode([b"event: ping\ndata: 1\n\ndata: 2\n\n"]) == [
        SseEvent("ping", "1"),
        SseEvent("message", "2"),
    ]


def test_sse_event_without_data_is_not_dispatched() -> None:
    assert decode([b"event: ping\n\ndata: 2\n\n"]) == [SseEvent("message", "2")]


def test_sse_long_line_has_no_limit() -> None:
    payload = "x" * 1_000_000
    assert decode([b"data: " + payload.encode() + b"\n\n"]) == [SseEvent("message", payload)]


_text = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n"), max_size=40
)


@given(
    events=st.lists(st.tuples(st.lists(_text, min_size=1, max_size=3), st.booleans()), max_size=6),
    crlf=st.booleans(),
    comments=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
)
def test_sse_any_stream_any_chunking(
    events: list[tuple[list[str], bool]], crlf: bool, comments: bool, cuts: list[int]
) -> None:
    newline = b"\r\n" if crlf else b"\n"
    body = b""
    for lines, named in events:
        if comments:
            body += b": OPENROUTER PROCESSING" + newline + newline
        if named:
            body += b"event: update" + newline
        for line in lines:
            body += b"data: " + line.encode() + newline
        body += newline
    points = sorted({min(c, len(body)) for c in cuts})
    chunks = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    expected = [
        SseEvent("update" if named else "message", "\n".join(lines)) for lines, named in events
    ]
    assert decode(chunks) == expected


def test_line_decoder() -> None:
    decoder = LineDecoder()
    assert decoder.feed(b'{"a":1}\n{"b"') == [b'{"a":1}']
    assert decoder.feed(b':2}\r\n\n{"c":3}') == [b'{"b":2}', b""]
    assert decoder.close() == [b'{"c":3}']
    assert decoder.close() == []


@pytest.mark.parametrize("cut", range(24))
def test_line_decoder_any_split(cut: int) -> None:
    body = b'{"a":"\xc3\xa5"}\r\n{"b":2}\n'
    decoder = LineDecoder()
    lines = decoder.feed(body[:cut]) + decoder.feed(body[cut:]) + decoder.close()
    assert lines == [b'{"a":"\xc3\xa5"}', b'{"b":2}']


# -- retry hints -----------------------------------------------------------------------------------

NOW = 1_750_000_000.0


def hints(**headers: str) -> CIMultiDict[str]:
    return CIMultiDict({name.replace("_", "-"): value for name, value in headers.items()})


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "20"}, 20.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"Retry-After": "0"}, 0.0),
        ({"Retry-After-Ms": "1500", "Retry-After": "20"}, 1.5),  # the precise one wins
        ({"Retry-After": email.utils.formatdate(NOW + 90, usegmt=True)}, 90.0),
        ({"Retry-After": email.utils.formatdate(NOW - 90, usegmt=True)}, 0.0),
        ({"X-RateLimit-Reset": str(int((NOW + 30) * 1000))}, 30.0),  # OpenRouter: epoch ms
        ({"X-RateLimit-Reset": str(int((NOW - 5) * 1000))}, 0.0),  # already reset
        ({"X-RateLimit-Reset": str(int(NOW + 45))}, 45.0),  # epoch seconds
        ({"X-RateLimit-Reset": "12"}, 12.0),  # a delta
        ({"X-RateLimit-Reset": "1m30s"}, 90.0),  # a duration
        ({"Retry-After": "20", "X-RateLimit-Reset": str(int((NOW + 30) * 1000))}, 20.0),
        # OpenAI: the reset of whichever limit is exhausted.
        ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "20s"}, 20.0),
        ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1m0.5s"}, 60.5),
        (
            {
                "x-ratelimit-remaining-requests": "12",
                "x-ratelimit-reset-requests": "5s",
                "x-ratelimit-remaining-tokens": "0",
                "x-ratelimit-reset-tokens": "6ms",
            },
            0.006,
        ),
        ({"x-ratelimit-remaining-requests": "12", "x-ratelimit-reset-requests": "5s"}, None),
        ({}, None),
        ({"Content-Type": "application/json"}, None),
    ],
)
def test_retry_after_from_headers(headers: dict[str, str], expected: float | None) -> None:
    result = retry_after_from_headers(CIMultiDict(headers), now=NOW)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    "headers",
    [
        {"Retry-After": "soon"},
        {"Retry-After": ""},
        {"Retry-After": "nan"},
        {"Retry-After": "inf"},
        {"Retry-After-Ms": "later"},
        {"X-RateLimit-Reset": "whenever"},
        {"X-RateLimit-Reset": "-inf"},
        {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "eventually"},
    ],
)
def test_retry_after_ignores_nonsense(headers: dict[str, str]) -> None:
    """A hint that cannot be read is no hint: never an exception, never a non-finite delay."""
    result = retry_after_from_headers(CIMultiDict(headers), now=NOW)
    assert result is None or (math.isfinite(result) and result >= 0)


@pytest.mark.parametrize(
    "headers",
    [
        {"Retry-After": "soon"},
        {"Retry-After": "Tomorrow, 25 Smarch 2025"},
        {"Retry-After": "inf"},
        {"Retry-After": "1e30"},
        {"X-RateLimit-Reset": "1e30"},
        {"X-RateLimit-Reset": "inf"},
    ],
)
def test_retry_after_unreadable_is_none(headers: dict[str, str]) -> None:
    assert retry_after_from_headers(CIMultiDict(headers), now=NOW) is None


def test_retry_after_date_without_zone_is_utc() -> None:
    date = email.utils.formatdate(NOW + 60, usegmt=True).replace("GMT", "-0000")
    assert retry_after_from_headers(CIMultiDict({"Retry-After": date}), now=NOW) == pytest.approx(
        60.0
    )


def test_retry_after_uses_the_clock_by_default() -> None:
    """Without ``now`` the reset is measured from the current time (an hour ahead here)."""
    import time

    reset = str(int((time.time() + 3600) * 1000))
    result = retry_after_from_headers(CIMultiDict({"X-RateLimit-Reset": reset}))
    assert result is not None and 3000 < result <= 3600
