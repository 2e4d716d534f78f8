"""Whisper-class speech to text on two ONNX Runtime sessions, as optimum exports them
(the layout of the Hub's ``onnx-community/whisper-*`` repositories):

    encoder_model.onnx   input_features [batch, n_mels, 3000] -> last_hidden_state
    decoder_model.onnx   input_ids [batch, tokens], encoder_hidden_states -> logits
    tokenizer.json, config.json, generation_config.json, preprocessor_config.json

Decoding is greedy (ratd.local.decoding: with ``decoder_with_past_model.onnx`` as a
key/value cache when the export has it, else recomputing the prefix), bounded by the model's
``max_target_positions`` (448 for Whisper) and stopped at ``<|endoftext|>``. The special
tokens come from ``generation_config.json`` where it names them, else from the tokenizer
by their Whisper names; no id is hard-coded. A multilingual model given no language
detects it from the first decoder step, restricted to the language tokens.

One batch item is one 30 s window of audio (``Window``); the batcher groups windows of
concurrent requests, the encoder runs them as one batch and the decoder steps every row
that shares a prefix length together. A window counts as ``max_target_positions`` tokens
against ``max_batch_tokens``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from ratatoskr.v1 import chat_pb2, media_pb2
from ratd import errors
from ratd.local import audio
from ratd.local.catalog import SPEECH_TO_TEXT, ModelSpec
from ratd.local.decoding import Cache, Decoder, select
from ratd.local.onnx_model import LocalModel, read_json
from ratd.local.sessions import SessionSettings, create_session
from ratd.local.sources import ModelFiles, decoder_file, decoder_with_past_file

# Whisper's timestamp tokens step by 20 ms.
TIMESTAMP_STEP = 0.02
# <|en|>, <|haw|>...: the language tokens.
_LANGUAGE_TOKEN = re.compile(r"<\|([a-z]{2,3})\|>")


@dataclass(frozen=True, slots=True)
class Window:
    """One 30 s window of one request, ready for the model."""

    features: np.ndarray  # [n_mels, 3000]
    language: int | None  # the language token, None: detect (multilingual models)
    timestamps: bool
    prompt: tuple[int, ...]  # tokens of the caller's prompt (without <|startofprev|>)
    cost: int

    @property
    def length(self) -> int:
        return self.cost


@dataclass(frozen=True, slots=True)
class Decoded:
    """What the decoder made of one window: its language token and the tokens after the
    prefix (``<|endoftext|>`` excluded)."""

    language: int | None
    tokens: tuple[int, ...]


@dataclass(frozen=True)
class WhisperTokens:
    """The special tokens of a Whisper vocabulary."""

    start: int
    end: int
    transcribe: int | None
    no_timestamps: int | None
    timestamp_begin: int | None
    previous: int | None
    languages: dict[str, int]
    suppress: tuple[int, ...]
    begin_suppress: tuple[int, ...]

    @classmethod
    def read(
        cls, tokenizer: Tokenizer, generation: dict[str, Any], name: str, vocab_size: int = 0
    ) -> WhisperTokens:
        """``vocab_size``: the model's (config.json), which places the timestamp tokens
        right after <|notimestamps|> when the tokenizer does not list them (the
        tokenizer.json of openai/whisper-* repositories does not)."""

        def token(key: str, text: str) -> int | None:
            value = generation.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            return tokenizer.token_to_id(text)

        start = token("decoder_start_token_id", "<|startoftranscript|>")
        end = token("eos_token_id", "<|endoftext|>")
        if start is None or end is None:
            raise errors.ModelNotAvailable(
                f"{name}: the tokenizer has no <|startoftranscript|> or <|endoftext|> token: "
                "not a Whisper vocabulary",
                model=name,
            )
        tasks = generation.get("task_to_id")
        transcribe = (
            tasks.get("transcribe")
            if isinstance(tasks, dict) and isinstance(tasks.get("transcribe"), int)
            else tokenizer.token_to_id("<|transcribe|>")
        )
        no_timestamps = token("no_timestamps_token_id", "<|notimestamps|>")
        first_stamp = tokenizer.token_to_id("<|0.00|>")
        if first_stamp is None and no_timestamps is not None and vocab_size > no_timestamps + 1:
            first_stamp = no_timestamps + 1
        return cls(
            start=start,
            end=end,
            transcribe=transcribe,
            no_timestamps=no_timestamps,
            timestamp_begin=first_stamp,
            previous=tokenizer.token_to_id("<|startofprev|>"),
            languages=_languages(tokenizer, generation),
            suppress=_ints(generation.get("suppress_tokens")),
            begin_suppress=_ints(generation.get("begin_suppress_tokens")),
        )

    def special(self, token: int) -> bool:
        """A token that is not text (control, language, task or timestamp)."""
        if self.timestamp_begin is not None and token >= self.timestamp_begin:
            return True
        return token in (self.start, self.end) or token in self.languages.values()


def _ints(value: object) -> tuple[int, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, int) and not isinstance(v, bool))


def _languages(tokenizer: Tokenizer, generation: dict[str, Any]) -> dict[str, int]:
    """Language code -> token, from generation_config's lang_to_id or the tokenizer."""
    found: dict[str, int] = {}
    table = generation.get("lang_to_id")
    if isinstance(table, dict):
        for text, index in table.items():
            match = _LANGUAGE_TOKEN.fullmatch(str(text))
            if match and isinstance(index, int):
                found[match.group(1)] = index
        return found
    for index, added in tokenizer.get_added_tokens_decoder().items():
        match = _LANGUAGE_TOKEN.fullmatch(added.content)
        if match:
            found[match.group(1)] = index
    return found


class SpeechModel(LocalModel):
    kind = SPEECH_TO_TEXT

    def __init__(self, spec: ModelSpec, files: ModelFiles, settings: SessionSettings) -> None:
        self.spec = spec
        self.files = files
        self.settings = settings
        self.config = read_json(files, "config.json")
        generation = read_json(files, "generation_config.json")
        self.tokenizer = self._tokenizer(files.require("tokenizer.json"))
        vocab_size = _positive(self.config.get("vocab_size")) or 0
        self.tokens = WhisperTokens.read(self.tokenizer, generation, spec.name, vocab_size)
        self.multilingual = self._multilingual(generation, vocab_size)
        self.max_tokens = _positive(self.config.get("max_target_positions")) or 448
        self.encoder, self.device = self._session(files.onnx)
        self._check_encoder()
        decoder, _ = self._session(files.require(decoder_file(files.onnx_file)))
        past_file = files.find(decoder_with_past_file(files.onnx_file))
        with_past = self._session(past_file)[0] if past_file is not None else None
        self.decoder = Decoder(spec.name, decoder, with_past)
        self.n_mels = self._n_mels(read_json(files, "preprocessor_config.json"))
        self.features_type = _numpy_type(self.encoder.get_inputs()[0].type)

    # -- loading -------------------------------------------------------------------------------

    def _tokenizer(self, path: Path) -> Tokenizer:
        try:
            return Tokenizer.from_file(str(path))
        except Exception as err:  # tokenizers raises plain Exception on bad files
            raise errors.ModelNotAvailable(
                f"{path}: cannot load the tokenizer: {err}", model=self.spec.name
            ) from None

    def _session(self, path: Path) -> tuple[ort.InferenceSession, str]:
        try:
            return create_session(path, self.settings)
        except Exception as err:  # onnxruntime raises its own exception types
            message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise errors.ModelNotAvailable(
                f"{self.spec.name}: cannot load {path} ({self.files.source}): {message}",
                model=self.spec.name,
                metadata={"file": str(path)},
            ) from None

    def _check_encoder(self) -> None:
        inputs = [i.name for i in self.encoder.get_inputs()]
        if len(inputs) != 1 or len(self.encoder.get_inputs()[0].shape) != 3:
            raise errors.ModelNotAvailable(
                f"{self.spec.name}: the encoder must take one input, the log-mel features "
                f"[batch, n_mels, frames] (optimum's encoder_model.onnx); it takes {inputs}",
                model=self.spec.name,
            )

    def _multilingual(self, generation: dict[str, Any], vocab_size: int) -> bool:
        """generation_config's is_multilingual; else Whisper's own rule (English-only
        vocabularies have 51864 tokens, multilingual ones more; both tokenizers list the
        language tokens); else whether the tokenizer has languages."""
        stated = generation.get("is_multilingual")
        if isinstance(stated, bool):
            return stated
        if vocab_size:
            return vocab_size >= 51865
        return len(self.tokens.languages) > 1

    def _n_mels(self, preprocessor: dict[str, Any]) -> int:
        shape = self.encoder.get_inputs()[0].shape
        if len(shape) == 3 and isinstance(shape[1], int):
            return shape[1]
        return (
            _positive(preprocessor.get("feature_size"))
            or _positive(self.config.get("num_mel_bins"))
            or 80
        )

    # -- requests ------------------------------------------------------------------------------

    def language_token(self, code: str) -> int | None:
        """The token of ``code`` ("en", "de-AT" -> "de"); None: detect or English-only."""
        base = code.split("-", maxsplit=1)[0].lower()
        if not self.multilingual:
            if base not in ("", "en"):
                raise errors.InvalidInput(
                    f"language: {self.spec.name} is an English-only model; got {code!r}",
                    field="language",
                    model=self.spec.name,
                )
            return None
        if not code:
            return None
        found = self.tokens.languages.get(base)
        if found is None:
            raise errors.InvalidInput(
                f"language: {self.spec.name} does not know the language {code!r}",
                field="language",
                model=self.spec.name,
            )
        return found

    def windows(
        self, samples: np.ndarray, request: media_pb2.TranscribeRequest
    ) -> list[tuple[float, float, Window]]:
        """(start secs, end secs, item) per 30 s window of 16 kHz ``samples``."""
        language = self.language_token(request.language)
        prompt: tuple[int, ...] = ()
        if request.prompt and self.tokens.previous is not None:
            # The prompt keeps at most half the decoder's window, as Whisper does.
            ids = self.tokenizer.encode(" " + request.prompt.strip(), add_special_tokens=False).ids
            prompt = tuple(ids[-(self.max_tokens // 2 - 1) :])
        stamps = request.timestamps and self.tokens.timestamp_begin is not None
        return [
            (
                start,
                end,
                Window(
                    audio.log_mel(piece, self.n_mels), language, stamps, prompt, self.max_tokens
                ),
            )
            for start, end, piece in audio.windows(samples)
        ]

    def prefix(self, window: Window, language: int | None) -> list[int]:
        tokens = self.tokens
        ids: list[int] = []
        if window.prompt and tokens.previous is not None:
            ids += [tokens.previous, *window.prompt]
        ids.append(tokens.start)
        if self.multilingual and language is not None:
            ids.append(language)
            if tokens.transcribe is not None:
                ids.append(tokens.transcribe)
        if not window.timestamps and tokens.no_timestamps is not None:
            ids.append(tokens.no_timestamps)
        return ids

    # -- inference (in a worker thread) -------------------------------------------------------

    def run(self, batch: Sequence[Window]) -> list[Decoded]:
        features = np.stack([w.features for w in batch]).astype(self.features_type)
        (hidden,) = self.encoder.run(None, {self.encoder.get_inputs()[0].name: features})
        languages = [w.language for w in batch]
        undetected = [i for i, lang in enumerate(languages) if lang is None]
        if self.multilingual and undetected and self.tokens.languages:
            found = self._detect(hidden[undetected])
            for row, token in zip(undetected, found, strict=True):
                languages[row] = token
        prefixes = [self.prefix(w, lang) for w, lang in zip(batch, languages, strict=True)]
        results: list[tuple[int, ...]] = [()] * len(batch)
        for length in sorted({len(p) for p in prefixes}):
            rows = [i for i, p in enumerate(prefixes) if len(p) == length]
            generated = self._greedy(
                np.asarray([prefixes[i] for i in rows]),
                hidden[rows],
                [batch[i].timestamps for i in rows],
            )
            for row, tokens in zip(rows, generated, strict=True):
                results[row] = tokens
        return [Decoded(lang, tokens) for lang, tokens in zip(languages, results, strict=True)]

    def _detect(self, hidden: np.ndarray) -> list[int]:
        """The most likely language token of each row, from the step after <|startoftranscript|>."""
        ids = np.full((hidden.shape[0], 1), self.tokens.start, dtype=np.int64)
        logits, _ = self.decoder.step(ids, hidden, None)
        candidates = np.asarray(sorted(self.tokens.languages.values()))
        candidates = candidates[candidates < logits.shape[1]]
        best = logits[:, candidates].argmax(axis=1)
        return [int(candidates[i]) for i in best]

    def _mask(self, logits: np.ndarray, first: bool, timestamps: Sequence[bool]) -> None:
        """Suppress what the generation config suppresses, and timestamps where not asked."""
        width = logits.shape[1]
        suppressed = [t for t in self.tokens.suppress if t < width]
        if first:
            suppressed += [t for t in self.tokens.begin_suppress if t < width]
        if suppressed:
            logits[:, suppressed] = -np.inf
        begin = self.tokens.timestamp_begin
        if begin is not None and begin < width:
            for row, wanted in enumerate(timestamps):
                if not wanted:
                    logits[row, begin:] = -np.inf

    def _greedy(
        self, prefixes: np.ndarray, hidden: np.ndarray, timestamps: Sequence[bool]
    ) -> list[tuple[int, ...]]:
        """Greedy decoding of rows sharing a prefix length, each until <|endoftext|> or
        the decoder's window is full; finished rows leave the batch."""
        out: list[list[int]] = [[] for _ in range(prefixes.shape[0])]
        active = list(range(prefixes.shape[0]))
        ids = prefixes.astype(np.int64)
        cache: Cache | None = None
        for step in range(self.max_tokens - prefixes.shape[1]):
            logits, cache = self.decoder.step(ids, hidden, cache)
            self._mask(logits, step == 0, [timestamps[r] for r in active])
            chosen = logits.argmax(axis=1)
            keep: list[int] = []
            for position, row in enumerate(active):
                token = int(chosen[position])
                if token == self.tokens.end:
                    continue
                out[row].append(token)
                keep.append(position)
            if not keep:
                break
            active = [active[p] for p in keep]
            ids = np.concatenate([ids[keep], chosen[keep, None].astype(np.int64)], axis=1)
            hidden = hidden[keep]
            cache = select(cache, keep)
        return [tuple(tokens) for tokens in out]

    def warm_up(self, max_batch_tokens: int, max_batch_size: int) -> None:
        """The encoder at the largest batch the batcher forms, and two decoder steps (the
        second through the cache, when there is one)."""
        rows = max(1, min(max_batch_size, max_batch_tokens // self.max_tokens))
        features = np.zeros((rows, self.n_mels, audio.WINDOW_FRAMES), dtype=self.features_type)
        (hidden,) = self.encoder.run(None, {self.encoder.get_inputs()[0].name: features})
        ids = np.full((rows, 2), self.tokens.start, dtype=np.int64)
        _, cache = self.decoder.step(ids[:, :1], hidden, None)
        self.decoder.step(ids, hidden, cache)

    def close(self) -> None:
        for name in ("encoder", "decoder", "tokenizer"):
            self.__dict__.pop(name, None)

    # -- answers -------------------------------------------------------------------------------

    def text(self, tokens: Sequence[int]) -> str:
        words = [t for t in tokens if not self.tokens.special(t)]
        return self.tokenizer.decode(words, skip_special_tokens=True).strip()

    def segments(
        self, start: float, end: float, decoded: Decoded
    ) -> list[media_pb2.TranscriptSegment]:
        """The window's segments: between pairs of timestamp tokens when the model gave
        them, else one covering the window's audio."""
        begin = self.tokens.timestamp_begin
        found: list[media_pb2.TranscriptSegment] = []
        opened: float | None = None
        pending: list[int] = []
        for token in decoded.tokens:
            if begin is None or token < begin:
                pending.append(token)
                continue
            at = min(end, start + (token - begin) * TIMESTAMP_STEP)
            if opened is None:
                opened = at
            elif pending:
                text = self.text(pending)
                if text:
                    found.append(
                        media_pb2.TranscriptSegment(start_secs=opened, end_secs=at, text=text)
                    )
                opened, pending = None, []
            else:
                opened = at
        rest = self.text(pending)
        if rest:
            found.append(
                media_pb2.TranscriptSegment(
                    start_secs=opened if opened is not None else start, end_secs=end, text=rest
                )
            )
        return found

    def response(
        self,
        pieces: Sequence[tuple[float, float, Decoded]],
        duration: float,
        want_segments: bool,
        language: str,
    ) -> media_pb2.TranscribeResponse:
        segments = [s for start, end, d in pieces for s in self.segments(start, end, d)]
        tokens = sum(len(d.tokens) for _, _, d in pieces)
        answer = media_pb2.TranscribeResponse(
            text=" ".join(s.text for s in segments),
            language=language or self._language_name(pieces) or ("" if self.multilingual else "en"),
            duration_secs=duration,
            usage=chat_pb2.Usage(completion_tokens=tokens, total_tokens=tokens),
        )
        if want_segments:
            answer.segments.extend(segments)
        return answer

    def _language_name(self, pieces: Sequence[tuple[float, float, Decoded]]) -> str:
        codes = {token: code for code, token in self.tokens.languages.items()}
        for _, _, decoded in pieces:
            if decoded.language is not None and decoded.language in codes:
                return codes[decoded.language]
        return ""


def _positive(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 1_000_000:
        return value
    return None


def _numpy_type(onnx_type: str) -> type[np.floating[Any]]:
    return np.float16 if onnx_type == "tensor(float16)" else np.float32
