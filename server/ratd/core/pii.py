"""The built-in interceptor ``ratd.interceptors:PiiRedactor``: replaces e-mail addresses
and phone numbers (and any patterns of your own) in the text a call sends upstream, so
that they never leave the building.

It rewrites the caller's text fields: chat messages (content and text parts), prompts
and system prompts, texts to embed, NLI premises and hypotheses, texts to classify or
count. Model names, options and tool schemas are left alone. Patterns are regular
expressions; phone numbers are found by a heuristic (9 to 15 digits, with the usual
separators), so tune ``kinds``/``patterns`` to your data. Large requests are scanned on
a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf.message import Message

from ratd.core.interceptors import CallContext, Interceptor

EMAIL = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
# An optional +country code, optional (area), then groups of digits with separators.
PHONE = r"(?<![\w+])\+?(?:\(\d{1,4}\)[ .-]?)?\d(?:[ .-]?\d|[ .-]?\(\d{1,4}\)){6,16}(?!\w)"
BUILT_IN = {"email": EMAIL, "phone": PHONE}

# The fields that carry the caller's text, in every request type.
TEXT_FIELDS = frozenset(
    {"content", "text", "texts", "prompt", "system", "premise", "hypothesis", "target"}
)
# Text beyond this many characters is scanned on a worker thread.
_THREAD_ABOVE = 64 * 1024


class PiiRedactor(Interceptor):
    """``[interceptors.settings."ratd.interceptors:PiiRedactor"]``: ``kinds`` (default
    ["email", "phone"]), ``patterns`` (name = regex, added), ``replacement`` (default
    "[REDACTED:{kind}]"; ``{kind}`` is the pattern's name)."""

    name = "pii-redactor"

    def __init__(
        self,
        kinds: Sequence[str] = ("email", "phone"),
        patterns: Mapping[str, str] | None = None,
        replacement: str = "[REDACTED:{kind}]",
    ) -> None:
        unknown = [k for k in kinds if k not in BUILT_IN]
        if unknown:
            raise ValueError(f"unknown kinds {unknown} (built in: {', '.join(BUILT_IN)})")
        chosen = {k: BUILT_IN[k] for k in kinds} | dict(patterns or {})
        if not chosen:
            raise ValueError("nothing to redact: no kinds and no patterns")
        for kind, pattern in chosen.items():
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"pattern {kind!r} is not a valid regex: {err}") from None
        # One alternation, a group per pattern (k0, k1, ...) saying which one matched.
        self._pattern = re.compile(
            "|".join(f"(?P<k{i}>{p})" for i, p in enumerate(chosen.values()))
        )
        self._names = {f"k{i}": k for i, k in enumerate(chosen)}
        self._replacement = replacement

    def redact(self, text: str) -> str:
        return self._pattern.sub(self._replace, text)

    def _replace(self, match: re.Match[str]) -> str:
        kind = self._names.get(match.lastgroup or "", "")
        if kind == "phone" and not 9 <= sum(c.isdigit() for c in match.group()) <= 15:
            return match.group()  # a date, a version, an id: too few or many digits
        return self._replacement.replace("{kind}", kind)

    async def before(self, call: CallContext, request: Any) -> Any:
        if _text_size(request) > _THREAD_ABOVE:
            return await asyncio.to_thread(self._rewritten, request)
        return self._rewritten(request)

    def _rewritten(self, request: Message) -> Message | None:
        """A redacted copy of ``request``, or None when there was nothing to redact."""
        copy = type(request)()
        copy.CopyFrom(request)
        return copy if self._walk(copy) else None

    def _walk(self, message: Message) -> bool:
        changed = False
        for descriptor, value in message.ListFields():
            if descriptor.message_type is not None:
                if descriptor.message_type.GetOptions().map_entry:
                    continue
                items = value if _repeated(descriptor) else [value]
                for item in items:
                    changed = self._walk(item) or changed
            elif descriptor.name in TEXT_FIELDS and descriptor.type == descriptor.TYPE_STRING:
                changed = self._rewrite_field(message, descriptor, value) or changed
        return changed

    def _rewrite_field(self, message: Message, descriptor: Any, value: Any) -> bool:
        if _repeated(descriptor):
            new = [self.redact(v) for v in value]
            if new == list(value):
                return False
            del value[:]
            value.extend(new)
            return True
        redacted = self.redact(value)
        if redacted == value:
            return False
        setattr(message, descriptor.name, redacted)
        return True


def _repeated(descriptor: Any) -> bool:
    return bool(descriptor.is_repeated)


def _text_size(request: Message) -> int:
    return request.ByteSize()
