"""Audio for local speech to text: WAV decoding, resampling to 16 kHz and Whisper's log-mel
features, in numpy only (no torch, librosa or ffmpeg in the daemon).

Only WAV is decoded: PCM 8/16/24/32-bit integer or 32/64-bit float, any channel count
(averaged to mono), any sample rate (resampled). Compressed formats (MP3, OGG, FLAC...)
would need a codec library; they are refused with INVALID_ARGUMENT naming what is taken.

The features follow Whisper's front end: a 400-sample (25 ms) periodic Hann window every
160 samples (10 ms) over audio reflect-padded by 200 samples at each end, the power
spectrum through a Slaney-scale mel filterbank (0-8 kHz, area-normalised triangles),
log10 clamped to 8 below the maximum, then (x + 4) / 4. A 30 s window is 3000 frames.
Everything here is CPU work: callers run it in a worker thread.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ratd import errors

SAMPLE_RATE = 16_000
N_FFT = 400
HOP = 160
WINDOW_SECS = 30
WINDOW_SAMPLES = SAMPLE_RATE * WINDOW_SECS
WINDOW_FRAMES = WINDOW_SAMPLES // HOP

ACCEPTED = (
    "WAV (RIFF/WAVE) with PCM 8/16/24/32-bit integer or 32/64-bit float samples, "
    "mono or multi-channel, any sample rate"
)
_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE


def _refuse(message: str) -> errors.InvalidInput:
    return errors.InvalidInput(f"audio: {message}; local models take {ACCEPTED}", field="audio")


@dataclass(frozen=True, slots=True)
class WavFormat:
    encoding: int  # _PCM or _FLOAT
    channels: int
    rate: int
    bits: int


def _chunks(data: bytes) -> dict[bytes, bytes]:
    """The RIFF chunks by id (first of each), bounded by the bytes present."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise _refuse("not a WAV file")
    found: dict[bytes, bytes] = {}
    offset = 12
    while offset + 8 <= len(data):
        ident, size = data[offset : offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        body = data[offset + 8 : offset + 8 + size]
        found.setdefault(ident, body)
        offset += 8 + size + (size & 1)
    return found


def _format(chunk: bytes) -> WavFormat:
    if len(chunk) < 16:
        raise _refuse("the WAV file has no valid fmt chunk")
    encoding, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", chunk)
    if encoding == _EXTENSIBLE and len(chunk) >= 26:
        encoding = struct.unpack_from("<H", chunk, 24)[0]  # the sub-format GUID's first field
    valid = (encoding == _PCM and bits in (8, 16, 24, 32)) or (
        encoding == _FLOAT and bits in (32, 64)
    )
    if not valid:
        kind = {1: "PCM", 3: "float"}.get(encoding, f"format tag {encoding}")
        raise _refuse(f"WAV {kind} with {bits}-bit samples is not supported")
    if not 1 <= channels <= 64 or not 1_000 <= rate <= 384_000:
        raise _refuse(f"WAV with {channels} channels at {rate} Hz is not supported")
    return WavFormat(encoding, channels, rate, bits)


def _samples(raw: bytes, fmt: WavFormat) -> np.ndarray:
    """Interleaved samples as float32 in [-1, 1]."""
    width = fmt.bits // 8
    usable = len(raw) - len(raw) % (width * fmt.channels)
    raw = raw[:usable]
    if fmt.encoding == _FLOAT:
        return np.frombuffer(raw, dtype="<f4" if width == 4 else "<f8").astype(np.float32)
    if width == 1:
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    if width == 3:
        bytes3 = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        values = bytes3[:, 0] | (bytes3[:, 1] << 8) | (bytes3[:, 2] << 16)
        values = np.where(values >= 1 << 23, values - (1 << 24), values)
        return values.astype(np.float32) / float(1 << 23)
    dtype = "<i2" if width == 2 else "<i4"
    return np.frombuffer(raw, dtype=dtype).astype(np.float32) / float(1 << (fmt.bits - 1))


def decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Mono float32 samples and their sample rate."""
    chunks = _chunks(data)
    if b"fmt " not in chunks or b"data" not in chunks:
        raise _refuse("the WAV file lacks its fmt or data chunk")
    fmt = _format(chunks[b"fmt "])
    samples = _samples(chunks[b"data"], fmt)
    if fmt.channels > 1:
        samples = samples.reshape(-1, fmt.channels).mean(axis=1, dtype=np.float32)
    if not np.all(np.isfinite(samples)):
        raise _refuse("the WAV file holds samples that are not finite numbers")
    return samples, fmt.rate


def duration(data: bytes) -> float:
    """Seconds of audio in a WAV file, from its header (cheap: nothing is decoded)."""
    chunks = _chunks(data)
    if b"fmt " not in chunks or b"data" not in chunks:
        raise _refuse("the WAV file lacks its fmt or data chunk")
    fmt = _format(chunks[b"fmt "])
    frames = len(chunks[b"data"]) // (fmt.bits // 8 * fmt.channels)
    return frames / fmt.rate


def resample(samples: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """``samples`` at ``target`` Hz: band-limited resampling through the spectrum (the
    frequencies above the lower Nyquist rate are dropped, so nothing aliases)."""
    if rate == target or samples.size == 0:
        return samples.astype(np.float32, copy=False)
    length = max(1, round(samples.size * target / rate))
    spectrum = np.fft.rfft(samples.astype(np.float64))
    bins = length // 2 + 1
    kept = np.zeros(bins, dtype=np.complex128)
    n = min(bins, spectrum.size)
    kept[:n] = spectrum[:n]
    out = np.fft.irfft(kept, n=length) * (length / samples.size)
    return out.astype(np.float32)


def to_model_rate(samples: np.ndarray, rate: int) -> np.ndarray:
    """``samples`` at 16 kHz, resampled 30 s at a time: the spectrum of one window at a
    time bounds the memory whatever the length, and the windows the model sees are
    exactly these (each is transcribed on its own, so their seams cost nothing)."""
    if rate == SAMPLE_RATE:
        return samples.astype(np.float32, copy=False)
    step = WINDOW_SECS * rate
    pieces = [resample(samples[i : i + step], rate) for i in range(0, samples.size, step)]
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


def _hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    freq = np.asarray(freq, dtype=np.float64)
    mels = freq / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(freq, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(freq >= 1000.0, log_part, mels)


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    freq = mels * (200.0 / 3)
    log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mels - 15.0))
    return np.where(mels >= 15.0, log_part, freq)


@lru_cache(maxsize=4)
def mel_filters(n_mels: int = 80, n_fft: int = N_FFT, rate: int = SAMPLE_RATE) -> np.ndarray:
    """[n_mels, n_fft // 2 + 1] triangular filters, Slaney-normalised (as Whisper's)."""
    fft_freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(
        np.linspace(_hz_to_mel(np.array(0.0)), _hz_to_mel(np.array(rate / 2)), n_mels + 2)
    )
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2 : n_mels + 2] - edges[:n_mels]))[:, None]
    return weights.astype(np.float32)


def frame_center_bin(freq: float, n_mels: int = 80) -> int:
    """The mel bin whose filter weighs ``freq`` most (for tests and diagnostics)."""
    column = round(freq * N_FFT / SAMPLE_RATE)
    return int(np.argmax(mel_filters(n_mels)[:, column]))


def log_mel(samples: np.ndarray, n_mels: int = 80) -> np.ndarray:
    """[n_mels, frames] log-mel features of 16 kHz audio; frames = len // 160."""
    padded = np.pad(samples.astype(np.float32), N_FFT // 2, mode="reflect")
    frames = 1 + (padded.size - N_FFT) // HOP
    strided = np.lib.stride_tricks.as_strided(
        padded, shape=(frames, N_FFT), strides=(padded.strides[0] * HOP, padded.strides[0])
    )
    window = np.hanning(N_FFT + 1)[:-1].astype(np.float32)  # periodic Hann
    power = np.abs(np.fft.rfft(strided * window, axis=1)) ** 2
    power = power[:-1]  # Whisper drops the last frame: 30 s -> exactly 3000 frames
    mel = mel_filters(n_mels) @ power.T.astype(np.float32)
    logs = np.log10(np.maximum(mel, 1e-10))
    logs = np.maximum(logs, logs.max() - 8.0)
    return ((logs + 4.0) / 4.0).astype(np.float32)


def windows(samples: np.ndarray) -> list[tuple[float, float, np.ndarray]]:
    """(start secs, end secs, 30 s of samples zero-padded) for each window of the audio;
    silence (no samples) is one empty window."""
    out: list[tuple[float, float, np.ndarray]] = []
    for start in range(0, max(1, samples.size), WINDOW_SAMPLES):
        piece = samples[start : start + WINDOW_SAMPLES]
        padded = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
        padded[: piece.size] = piece
        out.append((start / SAMPLE_RATE, (start + piece.size) / SAMPLE_RATE, padded))
    return out
