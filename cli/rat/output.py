"""How ``rat`` prints results: readable text for people, one JSON document per result
for scripts (``--json``), errors as one line on stderr with an exit code per class."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from google.protobuf import json_format
from google.protobuf.message import Message

from ratatoskr import errors
from ratatoskr.v1 import models_pb2

# Exit codes by error class, most specific first (documented in the README).
EXIT_CODES: tuple[tuple[type[errors.RatatoskrError], int], ...] = (
    (errors.ConnectionFailed, 3),
    (errors.ModelNotAvailable, 3),
    (errors.ModelNotFound, 4),
    (errors.InvalidInput, 5),
    (errors.AuthenticationFailed, 6),
    (errors.RateLimited, 7),
    (errors.NotImplementedByServer, 8),
    (errors.DeadlineExceeded, 9),
    (errors.ContentFiltered, 10),
    (errors.ContextLengthExceeded, 11),
    (errors.CallerUnauthenticated, 12),
    (errors.PermissionDenied, 13),
)


def exit_code(err: errors.RatatoskrError) -> int:
    for cls, code in EXIT_CODES:
        if isinstance(err, cls):
            return code
    return 1


def describe_error(err: errors.RatatoskrError) -> str:
    """One line: the message, then the status and where it came from."""
    where = [err.code.name if hasattr(err.code, "name") else str(err.code)]
    if err.reason:
        where.append(err.reason)
    if err.provider:
        where.append(f"provider {err.provider}")
    if tried := err.metadata.get("tried"):
        where.append(f"tried {tried}")
    line = f"{err.message} ({', '.join(where)})"
    if detail := err.metadata.get("detail"):
        line += f": {detail}"
    return line.replace("\n", " ")


def to_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def print_json(value: Message | dict[str, Any] | list[Any], out: TextIO = sys.stdout) -> None:
    if isinstance(value, Message):
        value = to_dict(value)
    elif isinstance(value, list):
        value = [to_dict(v) if isinstance(v, Message) else v for v in value]
    out.write(json.dumps(value, ensure_ascii=False) + "\n")


def table(rows: Sequence[Sequence[str]], header: Sequence[str], out: TextIO = sys.stdout) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        out.write(
            "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n"
        )


def capability_names(values: Iterable[int]) -> str:
    names = [
        models_pb2.ModelCapability.Name(v).removeprefix("MODEL_CAPABILITY_").lower() for v in values
    ]
    return ",".join(names)


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def when(ts: Any) -> str:
    if not ts.seconds and not ts.nanos:
        return "-"
    moment = datetime.fromtimestamp(ts.seconds, tz=UTC)
    delta = (moment - datetime.now(tz=UTC)).total_seconds()
    if abs(delta) < 90:
        return f"{abs(delta):.0f}s {'ago' if delta < 0 else 'from now'}"
    minutes = abs(delta) / 60
    return f"{minutes:.0f} min {'ago' if delta < 0 else 'from now'}"


def prices(pricing: models_pb2.PricingInfo | None) -> tuple[str, str]:
    """Input and output price per million tokens, "-" where unknown."""

    def one(name: str) -> str:
        if pricing is None or not pricing.HasField(name):
            return "-"
        return f"${getattr(pricing, name):g}"

    return one("prompt_cost_per_mtok"), one("completion_cost_per_mtok")


class Dim:
    """Dimmed text on a terminal (reasoning on stderr); plain text elsewhere."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.on = stream.isatty()

    def write(self, text: str) -> None:
        self.stream.write(f"\x1b[2m{text}\x1b[0m" if self.on else text)
        self.stream.flush()


def retirement(info: models_pb2.ModelInfo, today: dt.date | None = None) -> str:
    """A model's retirement in a table cell: "retired 2026-10-23 -> gpt-4.1-mini" once
    the shutdown date (UTC) has come, "shutdown 2027-01-14 -> gpt-6-luna" before it,
    "deprecated ..." without one, or "-"."""
    today = today or dt.datetime.now(dt.UTC).date()
    parts = []
    if info.HasField("shutdown_date"):
        past = info.shutdown_date[:10] <= today.isoformat()  # ISO dates sort as text
        parts.append(f"{'retired' if past else 'shutdown'} {info.shutdown_date}")
    elif info.HasField("deprecation_date"):
        parts.append(f"deprecated {info.deprecation_date}")
    if parts and info.HasField("replacement"):
        parts.append(f"-> {info.replacement}")
    return " ".join(parts) or "-"
