"""The cross-provider conformance scenarios: the same conversation, rendered by each
fake upstream in its own provider's wire format, must come out of ratd as the same
normalised events and statuses.

A fake picks the scenario from the model name it is asked for (``conf-text``,
``conf-tool``, ...). These constants are the content every fake renders.
"""

from __future__ import annotations

import json

TEXT = "The quick brown fox jumps over the lazy dog."
# Streams deliver the text in these pieces (fakes whose API has no deltas join them).
TEXT_PIECES = ("The quick", " brown fox", " jumps over", " the lazy dog.")
REASONING = "The user wants a pangram. I will give the classic one."
REASONING_PIECES = ("The user wants a pangram.", " I will give", " the classic one.")
REASONING_SIGNATURE = "c2lnbmF0dXJlLW9mLXRoZS1yZWFzb25pbmc="

WEATHER_ARGS = {"city": "Oslo", "unit": "celsius", "days": 3}
WEATHER_ARGS_JSON = json.dumps(WEATHER_ARGS, separators=(",", ":"))
# Argument text split across several stream chunks (for APIs that stream argument text).
WEATHER_ARGS_PIECES = ('{"city":', '"Oslo",', '"unit":"cel', 'sius","days":3}')
TIME_ARGS = {"city": "Oslo"}
TIME_ARGS_JSON = json.dumps(TIME_ARGS, separators=(",", ":"))
TOOL_CALLS = (("get_weather", WEATHER_ARGS_JSON), ("get_time", TIME_ARGS_JSON))

PROMPT_TOKENS = 23
COMPLETION_TOKENS = 11
REASONING_TOKENS = 9
CACHED_PROMPT_TOKENS = 4
RETRY_AFTER_SECONDS = 7

# Scenario names are the model names the fakes are asked for.
SCENARIOS = (
    "conf-text",  # plain text, finish stop, usage
    "conf-tool",  # one get_weather call, arguments split across chunks, finish tool_calls
    "conf-parallel",  # get_weather and get_time in one turn
    "conf-reasoning",  # reasoning (with a signature where the API has one), then TEXT
    "conf-auth",  # the provider refuses the key
    "conf-missing",  # the model does not exist
    "conf-rate-limit",  # 429 with a retry hint of RETRY_AFTER_SECONDS
    "conf-server-error",  # 500
    "conf-overloaded",  # 503 (Anthropic: 529)
    "conf-stream-error",  # a stream that delivers TEXT_PIECES[0], then an error event
)
