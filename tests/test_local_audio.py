"""The numpy audio front end of local speech to text (ratd.local.audio): WAV decoding of
the accepted sample formats, resampling, and Whisper's log-mel features checked against
properties computed here independently (where a pure tone lands on the Slaney mel scale,
what silence becomes, the frame count of a 30 s window)."""

from __future__ import annotations

import numpy as np
import pytest

from ratd import errors
from ratd.local import audio
from tests.fakes.whisper_models import tone, wav


def slaney_hz_to_mel(freq: float) -> float:
    if freq < 1000:
        return freq * 3 / 200
    return 15 + np.log(freq / 1000) * 27 / np.log(6.4)


def slaney_mel_to_hz(mel: float) -> float:
    if mel < 15:
        return mel * 200 / 3
    return float(1000 * np.exp((mel - 15) * np.log(6.4) / 27))


def expected_bin(freq: float, n_mels: int = 80) -> int:
    """The mel band whose centre is nearest ``freq``: centres are n_mels points spaced
    evenly in mel between 0 Hz and 8 kHz (both excluded)."""
    edges = np.linspace(0, slaney_hz_to_mel(8000), n_mels + 2)
    centres = np.array([slaney_mel_to_hz(m) for m in edges[1:-1]])
    return int(np.argmin(np.abs(centres - freq)))


@pytest.mark.parametrize("freq", [250.0, 1000.0, 3000.0, 6120.0])
def test_a_pure_tone_peaks_in_its_mel_bin(freq: float) -> None:
    window = audio.windows(tone(freq, 2.0).astype(np.float32))[0][2]
    mel = audio.log_mel(window)
    assert mel.shape == (80, audio.WINDOW_FRAMES) == (80, 3000)
    spoken = mel[:, 10:190].mean(axis=1)  # frames inside the 2 s of tone
    assert int(np.argmax(spoken)) == expected_bin(freq)
    # After the tone, the padding is silence: clamped 8 below the peak.
    assert np.allclose(mel[:, 400:], mel.max() - 2.0)


def test_silence_is_minus_one_and_a_half() -> None:
    """log10 of the 1e-10 floor is -10, the clamp keeps it, (-10 + 4) / 4 = -1.5."""
    mel = audio.log_mel(np.zeros(audio.WINDOW_SAMPLES, dtype=np.float32))
    assert np.allclose(mel, -1.5)


def test_128_bins_for_large_v3() -> None:
    mel = audio.log_mel(tone(1000.0, 1.0).astype(np.float32), n_mels=128)
    assert mel.shape == (128, 100)
    assert int(np.argmax(mel[:, 10:90].mean(axis=1))) == expected_bin(1000.0, 128)


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.argmax(spectrum) * rate / samples.size)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resampling_keeps_the_pitch_and_length(rate: int) -> None:
    out = audio.resample(tone(440.0, 1.0, rate).astype(np.float32), rate)
    assert out.dtype == np.float32 and out.size == 16000
    assert dominant_frequency(out, 16000) == pytest.approx(440.0, abs=2)
    assert np.abs(out).max() == pytest.approx(0.5, abs=0.03)


def test_downsampling_drops_what_16_khz_cannot_hold() -> None:
    """A 12 kHz tone at 48 kHz is above the 8 kHz Nyquist limit: it must vanish, not
    fold back to 4 kHz."""
    out = audio.resample(tone(12000.0, 1.0, 48000).astype(np.float32), 48000)
    assert np.abs(out).max() < 1e-3


def test_decodes_16_bit_float_and_stereo() -> None:
    samples, rate = audio.decode_wav(wav(tone(440, 0.5, 22050), 22050))
    assert rate == 22050 and samples.size == 11025
    assert np.abs(samples).max() == pytest.approx(0.5, abs=1e-3)
    floats, _ = audio.decode_wav(wav(tone(440, 0.5), float32=True))
    np.testing.assert_allclose(floats, tone(440, 0.5), atol=1e-6)
    left, right = tone(440, 0.5), -tone(440, 0.5)
    mono, _ = audio.decode_wav(wav(np.stack([left, right], axis=1), channels=2))
    assert np.abs(mono).max() < 1e-4  # opposite channels cancel


def pcm_wav(body: bytes, bits: int, rate: int = 16000) -> bytes:
    block = bits // 8
    fmt = (
        (1).to_bytes(2, "little")
        + (1).to_bytes(2, "little")
        + rate.to_bytes(4, "little")
        + (rate * block).to_bytes(4, "little")
        + block.to_bytes(2, "little")
        + bits.to_bytes(2, "little")
    )
    chunks = b"fmt " + len(fmt).to_bytes(4, "little") + fmt
    chunks += b"LIST" + (3).to_bytes(4, "little") + b"abc\x00"  # odd size, padded
    chunks += b"data" + len(body).to_bytes(4, "little") + body
    return b"RIFF" + (4 + len(chunks)).to_bytes(4, "little") + b"WAVE" + chunks


def test_decodes_8_and_24_bit_pcm_past_other_chunks() -> None:
    samples, _ = audio.decode_wav(pcm_wav(bytes([128, 255, 0]), 8))
    np.testing.assert_allclose(samples, [0.0, 127 / 128, -1.0])
    body = (1 << 22).to_bytes(3, "little") + ((1 << 24) - (1 << 22)).to_bytes(3, "little")
    samples, _ = audio.decode_wav(pcm_wav(body, 24))
    np.testing.assert_allclose(samples, [0.5, -0.5])
    assert audio.duration(pcm_wav(bytes(32000), 16)) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"ID3" + bytes(100), "not a WAV file"),
        (b"RIFF\x00\x00\x00\x00WAVE", "fmt or data chunk"),
        (pcm_wav(bytes(10), 12), "PCM with 12-bit"),
    ],
)
def test_refusals_name_what_is_accepted(data: bytes, words: str) -> None:
    with pytest.raises(errors.InvalidInput) as caught:
        audio.decode_wav(data)
    assert words in caught.value.message
    assert "local models take WAV" in caught.value.message
    assert caught.value.field == "audio"


def test_long_audio_is_resampled_window_by_window() -> None:
    """65 s at 44.1 kHz: exactly 16 kHz x 65 s out, the pitch kept in every window."""
    out = audio.to_model_rate(tone(440.0, 65.0, 44100).astype(np.float32), 44100)
    assert out.size == 65 * 16000
    for start, _, window in audio.windows(out):
        length = min(audio.WINDOW_SAMPLES, out.size - int(start * 16000))
        assert dominant_frequency(window[:length], 16000) == pytest.approx(440.0, abs=2)


# Computed once with transformers 5.25.0's WhisperFeatureExtractor(feature_size=80) (its
# numpy path) on CHIRP below, not a test dependency: per-bin means over the 5 s of sound
# (every 4th bin) and the frame at 2.5 s (every 4th bin). ratd matched the whole
# [80, 3000] array to 1.4e-6 (and the 128-bin one to 3e-6) when this was recorded.
REFERENCE_MEANS = [
    -0.557233, -0.517475, -0.497176, 0.951152, -0.48915, -0.488533, -0.488973, -0.490582,
    -0.490127, -0.484845, -0.484871, -0.48224, -0.4801, -0.475962, -0.469014, -0.462387,
    -0.455101, -0.443937, -0.431989, -0.449158,
]  # fmt: skip
REFERENCE_FRAME_250 = [
    -0.591858, -0.591858, -0.591858, 0.944038, -0.591858, -0.591858, -0.591858, -0.591858,
    -0.591858, -0.591858, -0.591858, -0.591858, -0.591858, -0.591858, -0.591858, 1.141549,
    -0.591858, -0.591858, -0.591858, -0.591858,
]  # fmt: skip


def test_features_match_the_transformers_feature_extractor() -> None:
    t = np.arange(16000 * 5) / 16000
    chirp = 0.4 * np.sin(2 * np.pi * (100 * t + 700 * t * t)) + 0.1 * np.sin(2 * np.pi * 440 * t)
    mel = audio.log_mel(audio.windows(chirp.astype(np.float32))[0][2])
    np.testing.assert_allclose(mel[:, :500].mean(axis=1)[::4], REFERENCE_MEANS, atol=2e-5)
    np.testing.assert_allclose(mel[::4, 250], REFERENCE_FRAME_250, atol=2e-5)
