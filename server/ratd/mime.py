"""What media bytes are, by their first bytes (never by what a caller or an upstream
declares), and the MIME type of each audio format name. Shared by the gateway core (which
refuses bytes that are not what they claim) and the providers (which label what upstreams
send back), so it sits below both."""

from __future__ import annotations

# The MIME type of each audio format a Synthesize request may name.
MIME_FOR_FORMAT = {
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "pcm": "audio/pcm",
}


def sniff_image(data: bytes) -> str | None:
    """The image type the bytes begin like, if any of those providers take."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def sniff_audio(data: bytes) -> str | None:
    """The audio container the bytes begin like, if any."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "audio/wav"
    if data.startswith(b"ID3") or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        if len(data) > 1 and data[1] & 0xF6 == 0xF0:  # ADTS (AAC), not an MPEG frame
            return "audio/aac"
        return "audio/mpeg"
    if data.startswith(b"OggS"):
        return "audio/ogg"
    if data.startswith(b"fLaC"):
        return "audio/flac"
    if data.startswith(b"\x1a\x45\xdf\xa3"):
        return "audio/webm"
    if data[4:8] == b"ftyp":
        return "audio/mp4"
    return None


def sniff_video(data: bytes) -> str | None:
    """The video container the bytes begin like, if any."""
    if data[4:8] == b"ftyp":
        return "video/quicktime" if data[8:10] == b"qt" else "video/mp4"
    if data.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm"
    return None
