"""A realtime voice session through ratd: stream a PCM16 file in, write the model's audio
answer to another file, print the transcripts, answer a tool call.

    python examples/realtime.py --model gpt-realtime --audio question.pcm --out answer.pcm
    python examples/realtime.py --model gemini-3.1-flash-live-preview --text "Weather in Oslo?"

The input file is raw 16-bit mono PCM at the provider's input rate (24 kHz for OpenAI,
16 kHz for Gemini: ``session.created`` says which). ratd needs the provider's key
(OPENAI_API_KEY, GOOGLE_API_KEY) in its own environment, never this script's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path

from ratatoskr import ServiceClient
from ratatoskr.realtime import RealtimeSession
from ratatoskr.v1 import realtime_pb2 as rt

WEATHER = rt.RealtimeTool(
    name="get_weather",
    description="The current weather in a city",
    parameters_json=json.dumps(
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    ),
)
CHUNK = 4800  # bytes per audio event: 100 ms of 24 kHz PCM16


async def converse(client: ServiceClient, model: str, audio: bytes, text: str) -> Answer:
    """One exchange: the question in, the answer's transcript (or text) and audio out."""
    answer = Answer()
    async with client.realtime(
        model,
        instructions="Answer briefly.",
        tools=[WEATHER],
        manual_turns=True,
        transcribe_input=True,
    ) as session:
        print(f"session open: {session.created.provider}:{session.created.model}")
        for start in range(0, len(audio), CHUNK):
            await session.send_audio(audio[start : start + CHUNK])
        if audio:
            await session.commit()
        if text:
            await session.send_text(text)
        await session.create_response()
        async for event in session:
            if await answer.take(session, event):
                break
    return answer


@dataclass
class Answer:
    said: list[str] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)

    @property
    def text(self) -> str:
        return "".join(self.said)

    async def take(self, session: RealtimeSession, event: rt.RealtimeResponse) -> bool:
        """Handle one server event; True at the session's end."""
        kind = event.WhichOneof("event")
        if kind == "audio_delta":
            self.audio += event.audio_delta.data
        elif kind in ("text_delta", "output_transcript_delta"):
            self.said.append(getattr(event, kind).text)
        elif kind == "input_transcript_delta":
            print(f"you said: {event.input_transcript_delta.text}")
        elif kind == "tool_call":
            call = event.tool_call
            print(f"tool call: {call.name}({call.arguments_json})")
            await session.send_tool_result(call.call_id, json.dumps({"sky": "sunny"}), call.name)
            await session.create_response()
        elif kind == "response_done":
            usage = event.response_done.usage
            cost = f", ${usage.cost_usd:.6f}" if usage.HasField("cost_usd") else ""
            print(f"response done: {usage.input_tokens} in, {usage.output_tokens} out{cost}")
            if self.said:  # the answer itself (not only a tool call) is complete
                await session.end()
        return kind == "session_ended"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", default="127.0.0.1:9741")
    parser.add_argument("--model", default="gpt-realtime")
    parser.add_argument("--audio", type=Path, help="raw PCM16 mono input")
    parser.add_argument("--text", default="", help="a text question instead of (or after) audio")
    parser.add_argument("--out", type=Path, help="where to write the answer's PCM16 audio")
    args = parser.parse_args()
    audio = args.audio.read_bytes() if args.audio else b""
    async with await ServiceClient.connect(args.address) as client:
        answer = await converse(client, args.model, audio, args.text)
    print(answer.text)
    if args.out:
        args.out.write_bytes(bytes(answer.audio))


if __name__ == "__main__":
    asyncio.run(main())
