"""The floor of the overhead benchmark: the least a Python gRPC-to-HTTP chat gateway can
do on the same stack as ratd (grpc.aio under uvloop, one pooled aiohttp session, orjson).

It takes ``ratatoskr.v1.Ratatoskr/Chat`` and ``ChatStream``, forwards them to one
OpenAI-compatible upstream and answers a ChatResponse (content, model, usage) or the
stream's content chunks, usage and a closing ``done``. No routing, validation, metrics,
logs, retries or time limits: whatever ratd spends beyond this is the price of its
features, and ratd ÷ floor says how close to the floor it runs.

    python benchmarks/floor_gateway.py --upstream http://127.0.0.1:PORT/v1

prints ``floor <host:port>`` once it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import orjson
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "client"))

from ratatoskr.v1 import chat_pb2, ratatoskr_pb2_grpc

ROLES = {value: name.removeprefix("ROLE_").lower() for name, value in chat_pb2.Role.items()}
# The options ratd's server takes (server/ratd/server.py, server_options).
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    ("grpc.so_reuseport", 0),
]


def _usage(usage: dict[str, Any]) -> chat_pb2.Usage:
    return chat_pb2.Usage(
        prompt_tokens=usage.get("prompt_tokens", 0),
        completion_tokens=usage.get("completion_tokens", 0),
        total_tokens=usage.get("total_tokens", 0),
    )


def _body(request: chat_pb2.ChatRequest | chat_pb2.ChatStreamRequest, stream: bool) -> bytes:
    payload: dict[str, Any] = {
        "model": request.options.model,
        "messages": [{"role": ROLES[m.role], "content": m.content} for m in request.messages],
    }
    if stream:
        payload["stream"] = True
        payload["stream_options"] = {"include_usage": True}
    return orjson.dumps(payload)


class Floor(ratatoskr_pb2_grpc.RatatoskrServicer):
    def __init__(self, session: aiohttp.ClientSession, upstream: str) -> None:
        self.session = session
        self.url = f"{upstream}/chat/completions"

    async def Chat(
        self, request: chat_pb2.ChatRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.ChatResponse:
        async with self.session.post(self.url, data=_body(request, False)) as response:
            data = orjson.loads(await response.read())
        reply = chat_pb2.ChatResponse(
            content=data["choices"][0]["message"].get("content") or "",
            model=data.get("model", ""),
        )
        if usage := data.get("usage"):
            reply.usage.CopyFrom(_usage(usage))
        return reply

    async def ChatStream(
        self, request: chat_pb2.ChatStreamRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[chat_pb2.ChatStreamResponse]:
        async with self.session.post(self.url, data=_body(request, True)) as response:
            async for line in response.content:
                if not line.startswith(b"data: {"):
                    continue
                chunk = orjson.loads(line[6:])
                choices = chunk.get("choices")
                if choices and (content := (choices[0].get("delta") or {}).get("content")):
                    yield chat_pb2.ChatStreamResponse(content=content)
                if usage := chunk.get("usage"):
                    yield chat_pb2.ChatStreamResponse(usage=_usage(usage))
        yield chat_pb2.ChatStreamResponse(done=True)


async def serve(upstream: str, address: str) -> None:
    connector = aiohttp.TCPConnector(limit=0)
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-floor"}
    async with aiohttp.ClientSession(
        connector=connector, headers=headers, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        server = grpc.aio.server(options=SERVER_OPTIONS)
        ratatoskr_pb2_grpc.add_RatatoskrServicer_to_server(Floor(session, upstream), server)
        port = server.add_insecure_port(address)
        await server.start()
        print(f"floor {address.rsplit(':', 1)[0]}:{port}", flush=True)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        await stopping.wait()
        await server.stop(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upstream", required=True, help="OpenAI-compatible base URL (…/v1)")
    parser.add_argument("--address", default="127.0.0.1:0")
    args = parser.parse_args()
    uvloop.run(serve(args.upstream, args.address))


if __name__ == "__main__":
    main()
