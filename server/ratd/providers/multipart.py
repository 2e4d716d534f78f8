"""multipart/form-data bodies (RFC 7578) for the upload endpoints (OpenAI's image edits
and transcriptions): the body built whole, since the files are already in memory and
capped by the [media] limits."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field


@dataclass(slots=True)
class Form:
    """Fields and files in order; ``encode`` gives the body and its Content-Type."""

    parts: list[tuple[str, bytes, str | None, str | None]] = field(default_factory=list)

    def add(self, name: str, value: str | int | float | bool) -> None:
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        self.parts.append((name, text.encode(), None, None))

    def add_file(self, name: str, data: bytes, filename: str, mime_type: str) -> None:
        self.parts.append((name, data, filename, mime_type))

    def encode(self) -> tuple[bytes, str]:
        boundary = f"ratatoskr-{secrets.token_hex(16)}"
        out = bytearray()
        for name, data, filename, mime_type in self.parts:
            out += f"--{boundary}\r\n".encode()
            disposition = f'form-data; name="{_quoted(name)}"'
            if filename is not None:
                disposition += f'; filename="{_quoted(filename)}"'
            out += f"Content-Disposition: {disposition}\r\n".encode()
            if mime_type is not None:
                out += f"Content-Type: {mime_type}\r\n".encode()
            out += b"\r\n" + data + b"\r\n"
        out += f"--{boundary}--\r\n".encode()
        return bytes(out), f"multipart/form-data; boundary={boundary}"


def _quoted(text: str) -> str:
    """A name or file name inside quotes (RFC 7578 §4.2: percent-encode '"' and line ends)."""
    return text.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
