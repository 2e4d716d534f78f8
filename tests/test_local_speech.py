"""Local speech to text through the gRPC service of an in-process ratd: a generated
Whisper-class encoder/decoder (tests/fakes/whisper_models.py) in real ONNX Runtime
sessions under the model manager. The decoded text is checked against the graph's own
greedy path, recomputed in numpy from its weights; also the stream variant, 30 s windows,
timestamp segments, language detection, special tokens read from the tokenizer alone,
bad and too-long audio (INVALID_ARGUMENT), the catalog's capabilities, and the lifecycle
(load on demand, idle unload, eviction under the RAM budget)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from ratatoskr import InvalidInput, ServiceClient, models_pb2
from ratd.local import audio
from ratd.local.speech import SpeechModel
from tests.fakes.hub_models import write_model
from tests.fakes.whisper_models import TinyWhisper, tone, vocabulary, wav, write_whisper
from tests.support.daemon import daemon_client, make_config, spawn_ratd
from tests.test_e2e import rat
from tests.test_local_lifecycle import (
    KnownCosts,
    daemon_and_client,
    loaded_names,
    manager_of,
    wait_until_unloaded,
)

pytestmark = pytest.mark.timeout(120)

VOCAB = vocabulary()
HELLO_WORLD = [VOCAB["hello"], VOCAB["world"]]
# The 440 Hz tone the tests speak: 2 s at 16 kHz.
SPEECH = wav(tone(440, 2.0))


def local_tables(root: Path) -> str:
    return f"""
[providers.local.models.tiny-whisper]
kind = "speech_to_text"
path = "{root / "tiny-whisper"}"

[providers.local.models.tiny-whisper-bare]
kind = "speech_to_text"
path = "{root / "tiny-whisper-bare"}"

[providers.local.models.tiny-whisper-en]
kind = "speech_to_text"
path = "{root / "tiny-whisper-en"}"

[providers.local.models.tiny-whisper-cached]
kind = "speech_to_text"
path = "{root / "tiny-whisper-cached"}"

[providers.local.models.tiny-whisper-past-rat]
kind = "speech_to_text"
path = "{root / "tiny-whisper-past-rat"}"

[providers.local.models.tiny-whisper-loud]
kind = "speech_to_text"
path = "{root / "tiny-whisper-loud"}"

[providers.local.models.tiny-whisper-loud-cached]
kind = "speech_to_text"
path = "{root / "tiny-whisper-loud-cached"}"

[providers.local.models.tiny-embed]
kind = "embedding"
path = "{root / "tiny-embed"}"
"""


@pytest.fixture(scope="module")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("speech-models")
    write_whisper(root / "tiny-whisper")
    write_whisper(root / "tiny-whisper-bare", generation=False)
    write_whisper(root / "tiny-whisper-en", multilingual=False)
    write_whisper(root / "tiny-whisper-cached", with_past="same")
    write_whisper(root / "tiny-whisper-past-rat", with_past="rat")
    write_whisper(root / "tiny-whisper-loud", loudness=True)
    write_whisper(root / "tiny-whisper-loud-cached", loudness=True, with_past="same")
    write_model(root / "tiny-embed", "embedding")
    return root


@pytest.fixture(scope="module")
def weights(model_root: Path) -> TinyWhisper:
    from tests.fakes.whisper_models import build_graphs

    return build_graphs()[2]


def config_text(root: Path, tmp_path: Path, extra: str = "", media: str = "") -> str:
    return f"""
[providers.local]
models_dir = "{tmp_path / "models"}"
hub_downloads = false
{extra}
{local_tables(root)}
{media}
"""


@pytest.fixture
async def client(model_root: Path, tmp_path: Path) -> AsyncIterator[ServiceClient]:
    text = config_text(
        model_root, tmp_path, "max_audio_secs = 100", "[media]\nmax_audio_bytes = 4000000\n"
    )
    async with daemon_client(make_config(text)) as c:
        yield c


def features(samples: np.ndarray) -> np.ndarray:
    return audio.log_mel(audio.windows(samples)[0][2])


async def test_transcribe_follows_the_greedy_path(
    client: ServiceClient, weights: TinyWhisper
) -> None:
    answer = await client.transcribe(SPEECH, "tiny-whisper", language="en")
    prefix = [VOCAB["<|startoftranscript|>"], VOCAB["<|en|>"], VOCAB["<|transcribe|>"]]
    prefix.append(VOCAB["<|notimestamps|>"])
    expected = weights.expected_tokens(
        features(tone(440, 2.0)),
        prefix,
        suppress=[VOCAB["um"]],
        stamps_from=VOCAB["<|0.00|>"],
    )
    assert expected == HELLO_WORLD  # the designed path, through the graph's own argmax
    assert answer.text == "hello world"
    assert (answer.language, answer.model, answer.provider) == ("en", "tiny-whisper", "local")
    assert answer.duration_secs == pytest.approx(2.0)
    assert answer.usage.completion_tokens == 2
    assert not answer.segments  # not asked for


async def test_a_prompt_precedes_the_prefix_and_stays_out_of_the_text(
    client: ServiceClient,
) -> None:
    answer = await client.transcribe(SPEECH, "tiny-whisper", language="en", prompt="the rat")
    assert answer.text == "hello world"


async def test_language_is_detected_when_not_given(client: ServiceClient) -> None:
    answer = await client.transcribe(SPEECH, "tiny-whisper")
    # The decoder's first step after <|startoftranscript|> ranks <|de|> over <|en|>.
    assert (answer.text, answer.language) == ("hello world", "de")
    with pytest.raises(InvalidInput) as caught:
        await client.transcribe(SPEECH, "tiny-whisper", language="fr")
    assert "fr" in caught.value.message


async def test_english_only_model(client: ServiceClient, weights: TinyWhisper) -> None:
    """No language or task token: <|startoftranscript|> <|notimestamps|>, then the path."""
    prefix = [VOCAB["<|startoftranscript|>"], VOCAB["<|notimestamps|>"]]
    expected = weights.expected_tokens(
        features(tone(440, 2.0)), prefix, [VOCAB["um"]], VOCAB["<|0.00|>"]
    )
    assert expected == HELLO_WORLD
    answer = await client.transcribe(SPEECH, "tiny-whisper-en")
    assert (answer.text, answer.language) == ("hello world", "en")
    with pytest.raises(InvalidInput) as caught:
        await client.transcribe(SPEECH, "tiny-whisper-en", language="de")
    assert "English-only" in caught.value.message


async def test_timestamp_tokens_make_segments(client: ServiceClient) -> None:
    answer = await client.transcribe(SPEECH, "tiny-whisper", language="en", timestamps=True)
    assert answer.text == "quick brown"
    assert [(s.start_secs, s.end_secs, s.text) for s in answer.segments] == [
        (0.0, 1.0, "quick brown")
    ]


async def test_special_tokens_from_the_tokenizer_alone(client: ServiceClient) -> None:
    """Without generation_config.json the tokens are found by name in tokenizer.json; and
    nothing is suppressed, so the graph's top choice after "hello" ("um") comes out."""
    answer = await client.transcribe(SPEECH, "tiny-whisper-bare", language="en")
    assert answer.text == "hello um"


async def test_long_audio_in_30_second_windows(client: ServiceClient) -> None:
    samples = tone(300, 65.0, amplitude=0.2)
    answer = await client.transcribe(wav(samples), "tiny-whisper", language="en", timestamps=False)
    assert answer.text == "hello world hello world hello world"
    answer = await client.transcribe(wav(samples), "tiny-whisper", language="en", timestamps=True)
    assert [(s.start_secs, s.end_secs) for s in answer.segments] == [
        (0.0, 1.0),
        (30.0, 31.0),
        (60.0, 61.0),
    ]
    assert answer.duration_secs == pytest.approx(65.0)


async def test_stereo_float_and_other_rates(client: ServiceClient) -> None:
    stereo = np.stack([tone(440, 1.0, 44100), tone(660, 1.0, 44100)], axis=1)
    for data in (
        wav(stereo, 44100, channels=2),
        wav(tone(440, 1.5, 8000), 8000, float32=True),
    ):
        answer = await client.transcribe(data, "tiny-whisper", language="en")
        assert answer.text == "hello world"
    answer = await client.transcribe(wav(stereo, 44100, channels=2), "tiny-whisper")
    assert answer.duration_secs == pytest.approx(1.0, abs=1e-3)


async def test_transcribe_stream(client: ServiceClient) -> None:
    data = wav(tone(440, 3.0))
    chunks = [data[i : i + 10_000] for i in range(0, len(data), 10_000)]
    answer = await client.transcribe_stream(chunks, "tiny-whisper", language="en", timestamps=True)
    assert answer.text == "quick brown"
    assert answer.duration_secs == pytest.approx(3.0)
    assert answer.provider == "local"


async def test_bad_audio_is_invalid_argument(client: ServiceClient) -> None:
    mp3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(400)
    with pytest.raises(InvalidInput) as caught:
        await client.transcribe(mp3, "tiny-whisper")
    assert "audio/mpeg" in caught.value.message and "WAV" in caught.value.message
    adpcm = bytearray(wav(tone(440, 0.5)))
    adpcm[20:22] = (2).to_bytes(2, "little")  # format tag 2: MS ADPCM
    with pytest.raises(InvalidInput) as caught:
        await client.transcribe(bytes(adpcm), "tiny-whisper")
    assert "format tag 2" in caught.value.message and "16" in caught.value.message
    truncated = wav(tone(440, 0.5))[:30]
    with pytest.raises(InvalidInput) as caught:
        await client.transcribe(truncated, "tiny-whisper")
    assert "WAV" in caught.value.message
    # An embedding model is not a speech model.
    with pytest.raises(InvalidInput) as caught:
        await client.transcribe(SPEECH, "tiny-embed")
    assert "speech-to-text" in caught.value.message


async def test_too_long_audio_is_invalid_argument(client: ServiceClient) -> None:
    # 101 s at 8 kHz (1.6 MB): within [media] max_audio_bytes, over max_audio_secs = 100.
    with pytest.raises(InvalidInput) as caught:
        await client.transcribe(wav(tone(200, 101.0, 8000), 8000), "tiny-whisper")
    assert "max_audio_secs" in caught.value.message
    # 130 s at 16 kHz (4.2 MB): over [media] max_audio_bytes.
    with pytest.raises(InvalidInput) as caught:
        await client.transcribe(wav(np.zeros(16000 * 130)), "tiny-whisper")
    assert "max_audio_bytes" in caught.value.message


async def test_catalog_says_speech_to_text(client: ServiceClient) -> None:
    models = {m.id: m for m in await client.list_models(provider="local")}
    assert models_pb2.MODEL_CAPABILITY_SPEECH_TO_TEXT in models["tiny-whisper"].capabilities
    assert models_pb2.MODEL_CAPABILITY_EMBED not in models["tiny-whisper"].capabilities
    capabilities = await client.capabilities()
    assert models_pb2.MODEL_CAPABILITY_SPEECH_TO_TEXT in capabilities


async def test_loads_on_demand_and_unloads_when_idle(model_root: Path, tmp_path: Path) -> None:
    text = config_text(model_root, tmp_path, "idle_timeout_secs = 0.3")
    async with daemon_and_client(text) as (daemon, client):
        status = await client.model_status("tiny-whisper")
        assert status.status == models_pb2.MODEL_STATUS_AVAILABLE
        assert (await client.transcribe(SPEECH, "tiny-whisper", language="en")).text
        loaded = {m.name: m for m in await client.list_loaded()}
        assert loaded["tiny-whisper"].kind == "speech_to_text"
        await wait_until_unloaded(client, "tiny-whisper")
        assert (await client.transcribe(SPEECH, "tiny-whisper", language="en")).text
        assert manager_of(daemon).entries["tiny-whisper"].loads == 2


async def test_evicted_under_the_budget(model_root: Path, tmp_path: Path) -> None:
    mb = 1024 * 1024
    costs = {"tiny-whisper": 100 * mb, "tiny-whisper-bare": 100 * mb, "tiny-embed": 100 * mb}
    text = config_text(model_root, tmp_path, "ram_budget_mb = 250\nidle_timeout_secs = 0")
    async with daemon_and_client(text, KnownCosts(costs)) as (daemon, client):
        await client.transcribe(SPEECH, "tiny-whisper", language="en")
        await client.embed("hello world", "tiny-embed")
        await client.transcribe(SPEECH, "tiny-whisper-bare", language="en")  # whisper goes
        assert await loaded_names(client) == {"tiny-embed", "tiny-whisper-bare"}
        await client.transcribe(SPEECH, "tiny-whisper", language="en")  # now tiny-embed goes
        assert await loaded_names(client) == {"tiny-whisper-bare", "tiny-whisper"}
        assert manager_of(daemon).used_bytes() == 200 * mb


async def test_rat_transcribe_with_a_local_model(model_root: Path, tmp_path: Path) -> None:
    """The real CLI against a spawned ratd: a small file (unary), a large one (a client
    stream of chunks), segments with --timestamps, and the provider-prefixed name."""
    with spawn_ratd(config_text(model_root, tmp_path), tmp_path) as ratd:
        small = tmp_path / "small.wav"
        small.write_bytes(SPEECH)
        code, stdout, err = await rat(
            ratd, "transcribe", str(small), "--model", "tiny-whisper", "--language", "en"
        )
        assert (code, stdout.strip()) == (0, "hello world"), err
        large = tmp_path / "large.wav"
        large.write_bytes(wav(tone(440, 40.0)))  # 1.3 MB: sent as a stream
        code, stdout, err = await rat(
            ratd, "transcribe", str(large), "-m", "local:tiny-whisper", "--timestamps"
        )
        assert code == 0, err
        assert stdout.splitlines() == [
            "[   0.00 -    1.00] quick brown",
            "[  30.00 -   31.00] quick brown",
        ]
        notes = tmp_path / "notes.wav"
        notes.write_bytes(b"ID3" + bytes(200))
        code, _, err = await rat(ratd, "transcribe", str(notes), "-m", "tiny-whisper")
        assert code != 0 and "WAV" in err


async def test_from_the_hub_then_the_cache(tmp_path: Path) -> None:
    """An onnx-community-style repository on the fake Hub: the encoder, its decoder and
    the JSON configs are downloaded on first use; the cache alone serves afterwards."""
    from tests.fakes.hub import FakeHub

    write_whisper(tmp_path / "repo", with_past="same")
    hub = await FakeHub().start()
    try:
        hub.add("acme/whisper-tiny", tmp_path / "repo")

        def text(endpoint: str, downloads: str) -> str:
            return f"""
[providers.local]
models_dir = "{tmp_path / "models"}"
hub_cache_dir = "{tmp_path / "hub-cache"}"
hub_endpoint = "{endpoint}"
hub_downloads = {downloads}
[providers.local.models.hub-whisper]
kind = "speech_to_text"
hub_repo = "acme/whisper-tiny"
"""

        async with daemon_client(make_config(text(hub.endpoint, "true"))) as client:
            answer = await client.transcribe(SPEECH, "hub-whisper", language="en")
            assert answer.text == "hello world"  # generation_config.json came too (um suppressed)
        fetched = {path.rsplit("/main/", 1)[1] for path in hub.downloads()}
        assert {
            "onnx/encoder_model.onnx",
            "onnx/decoder_model.onnx",
            "onnx/decoder_with_past_model.onnx",
            "tokenizer.json",
            "config.json",
            "generation_config.json",
            "preprocessor_config.json",
        } <= fetched
        async with daemon_client(make_config(text("http://127.0.0.1:9", "false"))) as client:
            answer = await client.transcribe(SPEECH, "acme/whisper-tiny", timestamps=True)
            assert answer.text == "quick brown"
    finally:
        await hub.stop()


@pytest.mark.parametrize(("batch_tokens", "batches"), [(2048, 1), (48, 2)])
async def test_windows_are_batched_within_the_token_budget(
    model_root: Path, tmp_path: Path, batch_tokens: int, batches: int
) -> None:
    """A window counts as the decoder's window (24 tokens in the test model): 65 s are
    three windows, one batch under the default budget, two (2 + 1) under 48 tokens."""
    text = config_text(model_root, tmp_path, f"max_batch_tokens = {batch_tokens}")
    async with daemon_and_client(text) as (daemon, client):
        answer = await client.transcribe(wav(tone(300, 65.0, amplitude=0.2)), "tiny-whisper")
        assert answer.text == "hello world hello world hello world"
        batcher = manager_of(daemon).entries["tiny-whisper"].batcher
        assert batcher is not None
        assert (batcher.items, batcher.batches) == (3, batches)


def test_timestamp_tokens_placed_by_the_vocabulary_size() -> None:
    """openai/whisper-* tokenizer.json files list no <|0.00|>...: the timestamps then start
    right after <|notimestamps|>, when the model's vocabulary reaches past it."""
    from tokenizers import AddedToken, Tokenizer
    from tokenizers import models as tokenizer_models

    from ratd.local.speech import WhisperTokens
    from tests.fakes.whisper_models import CONTROL, WORDS

    tokenizer = Tokenizer(
        tokenizer_models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]")
    )
    tokenizer.add_special_tokens([AddedToken(t, special=True) for t in CONTROL])
    tokens = WhisperTokens.read(tokenizer, {}, "bare", vocab_size=len(VOCAB))
    assert tokens.no_timestamps == VOCAB["<|notimestamps|>"]
    assert tokens.timestamp_begin == VOCAB["<|0.00|>"] == tokens.no_timestamps + 1
    assert tokens.languages == {"en": VOCAB["<|en|>"], "de": VOCAB["<|de|>"]}
    assert WhisperTokens.read(tokenizer, {}, "bare").timestamp_begin is None


async def test_openai_door_transcribes_with_the_local_model(
    model_root: Path, tmp_path: Path
) -> None:
    """/v1/audio/transcriptions through the official SDK reaches the same local model."""
    import openai

    from tests.support.daemon import running_daemon

    text = '[http]\naddress = "127.0.0.1:0"\n' + config_text(model_root, tmp_path)
    async with running_daemon(make_config(text)) as daemon:
        client = openai.AsyncOpenAI(
            base_url=f"http://{daemon.http_address}/v1", api_key="unused", max_retries=0
        )
        plain = await client.audio.transcriptions.create(
            model="tiny-whisper", file=("a.wav", SPEECH, "audio/wav"), language="en"
        )
        verbose = await client.audio.transcriptions.create(
            model="tiny-whisper",
            file=("a.wav", SPEECH, "audio/wav"),
            response_format="verbose_json",
            timestamp_granularities=["segment"],
            language="en",
        )
        with pytest.raises(openai.BadRequestError) as refused:
            await client.audio.transcriptions.create(
                model="tiny-whisper", file=("a.mp3", b"ID3" + bytes(300), "audio/mpeg")
            )
        await client.close()
    assert plain.text == "hello world"
    assert [(s.start, s.end, s.text) for s in verbose.segments or ()] == [(0.0, 1.0, "quick brown")]
    assert "WAV" in str(refused.value)


async def test_decoder_with_past_cache(model_root: Path, tmp_path: Path) -> None:
    """With decoder_with_past_model.onnx the first step runs decoder_model on the prefix and
    every later one the with-past graph on one token and the cache: the same text as
    without a cache (the audio's bias reaches later steps only through the cached
    cross-attention values), and a with-past graph that differs shows in the text."""
    async with daemon_and_client(config_text(model_root, tmp_path)) as (daemon, client):
        for timestamps, text in ((False, "hello world"), (True, "quick brown")):
            answer = await client.transcribe(
                SPEECH, "tiny-whisper-cached", language="en", timestamps=timestamps
            )
            assert answer.text == text
        long = await client.transcribe(wav(tone(300, 65.0, amplitude=0.2)), "tiny-whisper-cached")
        assert long.text == "hello world hello world hello world"
        rat_answer = await client.transcribe(SPEECH, "tiny-whisper-past-rat", language="en")
        assert rat_answer.text == "hello rat"
        for name, cached in (("tiny-whisper-cached", True), ("tiny-whisper-past-rat", True)):
            model = manager_of(daemon).entries[name].model
            assert isinstance(model, SpeechModel) and model.decoder.cached is cached
        await client.transcribe(SPEECH, "tiny-whisper", language="en")
        plain = manager_of(daemon).entries["tiny-whisper"].model
        assert isinstance(plain, SpeechModel) and not plain.decoder.cached


async def test_a_broken_export_fails_clearly(tmp_path: Path) -> None:
    """A decoder_model.onnx that is not a decoder: the load fails with UNAVAILABLE naming
    what the decoder must take; a missing decoder is named too."""
    import shutil

    from ratatoskr import ModelNotAvailable

    broken = tmp_path / "broken"
    write_whisper(broken)
    shutil.copy(broken / "onnx" / "encoder_model.onnx", broken / "onnx" / "decoder_model.onnx")
    missing = tmp_path / "missing"
    write_whisper(missing)
    (missing / "onnx" / "decoder_model.onnx").unlink()
    text = f"""
[providers.local]
models_dir = "{tmp_path / "models"}"
hub_downloads = false
[providers.local.models.broken]
kind = "speech_to_text"
path = "{broken}"
[providers.local.models.missing]
kind = "speech_to_text"
path = "{missing}"
"""
    async with daemon_client(make_config(text)) as client:
        with pytest.raises(ModelNotAvailable) as caught:
            await client.transcribe(SPEECH, "broken")
        assert "input_ids and encoder_hidden_states" in caught.value.message
        with pytest.raises(ModelNotAvailable) as caught:
            await client.transcribe(SPEECH, "missing")
        assert "decoder_model.onnx" in caught.value.message


@pytest.mark.parametrize("model", ["tiny-whisper-loud", "tiny-whisper-loud-cached"])
async def test_rows_of_one_batch_finish_at_different_steps(
    model_root: Path, tmp_path: Path, model: str
) -> None:
    """30 s of tone then 35 s of silence: three windows in one batch; the sounding one
    decodes a token more than the silent ones, so rows (and their cache) leave the batch
    while another goes on. Each window's tokens are its own greedy path, recomputed."""
    from tests.fakes.whisper_models import build_graphs

    weights = build_graphs(loudness=True)[2]
    samples = np.concatenate([tone(440, 30.0), np.zeros(16000 * 35)])
    prefix = [VOCAB[t] for t in ("<|startoftranscript|>", "<|en|>", "<|transcribe|>")]
    prefix.append(VOCAB["<|notimestamps|>"])
    expected = [
        weights.expected_tokens(audio.log_mel(piece), prefix, [VOCAB["um"]], VOCAB["<|0.00|>"])
        for _, _, piece in audio.windows(samples.astype(np.float32))
    ]
    rat = VOCAB["rat"]
    assert expected == [[*HELLO_WORLD, rat], HELLO_WORLD, HELLO_WORLD]
    async with daemon_and_client(config_text(model_root, tmp_path)) as (daemon, client):
        answer = await client.transcribe(wav(samples), model, language="en")
        batcher = manager_of(daemon).entries[model].batcher
        assert batcher is not None and (batcher.items, batcher.batches) == (3, 1)
    assert answer.text == "hello world rat hello world hello world"
    assert answer.usage.completion_tokens == 7
