"""Bad input on every RPC: INVALID_ARGUMENT naming the field, and the daemon stays up."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import grpc
import pytest

from ratatoskr import InvalidInput, Message, ServiceClient, ToolDefinition, chat_pb2
from tests.support.daemon import daemon_client, make_config

# A provider that is never reached: every request here fails validation first.
CONFIG = """
[providers.openai]
base_url = "http://127.0.0.1:9/v1"
[providers.openrouter]
base_url = "http://127.0.0.1:9/api/v1"
"""


@pytest.fixture
async def client() -> AsyncIterator[ServiceClient]:
    async with daemon_client(make_config(CONFIG)) as c:
        yield c
        assert (await c.health()).healthy, "the daemon must stay up after bad input"


def chat(
    messages: list[chat_pb2.Message] | None = None,
    tools: list[chat_pb2.ToolDefinition] | None = None,
    **options: object,
) -> chat_pb2.ChatRequest:
    opts = chat_pb2.ChatOptions(**{"model": "gpt-4o-mini", **options})  # type: ignore[arg-type]
    return chat_pb2.ChatRequest(
        messages=[Message.user("hi")] if messages is None else messages,
        tools=tools or [],
        options=opts,
    )


BAD_CHATS = {
    "no messages": (chat(messages=[]), "messages"),
    "unknown role": (chat(messages=[chat_pb2.Message(role=9, content="x")]), "messages[0].role"),
    "unset role": (chat(messages=[chat_pb2.Message(content="x")]), "messages[0].role"),
    "tool parameters not an object": (
        chat(tools=[chat_pb2.ToolDefinition(name="f", parameters_json="[1, 2]")]),
        "tools[0].parameters_json",
    ),
    "tool parameters not JSON": (
        chat(tools=[chat_pb2.ToolDefinition(name="f", parameters_json="{nope")]),
        "tools[0].parameters_json",
    ),
    "temperature NaN": (chat(temperature=math.nan), "options.temperature"),
    "temperature -1": (chat(temperature=-1.0), "options.temperature"),
    "top_p 3": (chat(top_p=3.0), "options.top_p"),
    "max_tokens 0": (chat(max_tokens=0), "options.max_tokens"),
    "empty model": (chat(model=""), "options.model"),
    "model rewriting an upstream path": (chat(model="models/../../v1/files/x"), "options.model"),
    "model injecting a log line": (chat(model="gpt-4o\nrequest forged=1"), "options.model"),
    "model with a query": (chat(model="gpt-4o?key=x"), "options.model"),
    "10 MB message": (
        chat(messages=[Message.user("x" * (10 * 1024 * 1024))]),
        "messages[0].content",
    ),
    "tool_call_id matching nothing": (
        chat(messages=[Message.user("hi"), Message.tool("call_9", "42")]),
        "messages[1].tool_call_id",
    ),
    "raw options not an object": (chat(raw_provider_options="[]"), "options.raw_provider_options"),
    "raw options 300 deep": (
        chat(raw_provider_options='{"a":' + "[" * 300 + "]" * 300 + "}"),
        "options.raw_provider_options",
    ),
    "image of an unsupported type": (
        chat(messages=[Message.user("look", images=[b"GIF8"], image_mime_type="image/tiff")]),
        "messages[0].parts[0].image.mime_type",
    ),
    "tool_choice naming no tool": (
        chat(
            tools=[ToolDefinition("f", "", {"type": "object"})],
            tool_choice=chat_pb2.ToolChoice(function="g"),
        ),
        "options.tool_choice.function",
    ),
    "schema not an object": (
        chat(response_format=chat_pb2.ResponseFormat(json_schema='"string"')),
        "options.response_format.json_schema",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CHATS))
async def test_chat_refuses_bad_input(client: ServiceClient, case: str) -> None:
    request, field = BAD_CHATS[case]
    with pytest.raises(InvalidInput) as caught:
        await client.chat(request.messages, request.tools, request.options)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.field == field
    assert field in caught.value.message


@pytest.mark.parametrize("case", ["no messages", "temperature NaN", "empty model", "10 MB message"])
async def test_chat_stream_refuses_bad_input(client: ServiceClient, case: str) -> None:
    request, field = BAD_CHATS[case]
    with pytest.raises(InvalidInput) as caught:
        async for _ in client.chat_stream(request.messages, request.tools, request.options):
            pass
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("prompt", "options", "field"),
    [
        ("", {"model": "gpt-4o-mini"}, "prompt"),
        ("hi", {"model": ""}, "options.model"),
        ("hi", {"model": "gpt-4o-mini", "temperature": -1.0}, "options.temperature"),
        ("hi", {"model": "gpt-4o-mini", "max_tokens": 0}, "options.max_tokens"),
        ("x" * (10 * 1024 * 1024), {"model": "gpt-4o-mini"}, "prompt"),
    ],
)
async def test_generate_refuses_bad_input(
    client: ServiceClient, prompt: str, options: dict[str, object], field: str
) -> None:
    opts = chat_pb2.GenerateOptions(**options)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput) as caught:
        await client.generate(prompt, opts)
    assert caught.value.field == field
    with pytest.raises(InvalidInput) as caught:
        async for _ in client.generate_stream(prompt, opts):
            pass
    assert caught.value.field == field


async def test_inference_rpcs_refuse_bad_input(client: ServiceClient) -> None:
    cases = [
        (client.embed("", "text-embedding-3-small"), "text"),
        (client.embed("hello", ""), "model"),
        (client.embed_batch([], "text-embedding-3-small"), "texts"),
        (client.embed_batch(["a", ""], "text-embedding-3-small"), "texts[1]"),
        (client.infer_nli("", "b", "nli-model"), "pairs[0].premise"),
        (client.infer_nli_batch([("a", "b"), ("c", "")], "nli-model"), "pairs[1].hypothesis"),
        (client.classify_zero_shot("text", [], "nli-model"), "labels"),
        (client.classify_zero_shot("", ["a"], "nli-model"), "text"),
        (client.classify_stance("text", "", "nli-model"), "target"),
        (client.count_tokens("x" * (10 * 1024 * 1024), "gpt-4o"), "text"),
        (client.count_tokens("hello", ""), "model"),
    ]
    for call, field in cases:
        with pytest.raises(InvalidInput) as caught:
            await call
        assert caught.value.field == field, caught.value.message


IMAGES = {
    "bytes that are no image": (chat_pb2.ImagePart(data=b"hello, not a picture", mime_type="image/png"), "messages[0].parts[0].image.data"),
    "bytes of another type": (chat_pb2.ImagePart(data=b"GIF89a....", mime_type="image/png"), "messages[0].parts[0].image.data"),
    "data URL that does not decode": (chat_pb2.ImagePart(url="data:image/png;base64,@@@not base64@@@"), "messages[0].parts[0].image.url"),
    "data URL without base64": (chat_pb2.ImagePart(url="data:image/png,rawbytes"), "messages[0].parts[0].image.url"),
    "data URL of an unsupported type": (chat_pb2.ImagePart(url="data:image/tiff;base64,SUkqAA=="), "messages[0].parts[0].image.url"),
    "no source at all": (chat_pb2.ImagePart(mime_type="image/png"), "messages[0].parts[0].image"),
    "url of another scheme": (chat_pb2.ImagePart(url="file:///etc/passwd"), "messages[0].parts[0].image.url"),
}


@pytest.mark.parametrize("case", sorted(IMAGES))
async def test_images_are_checked_before_any_provider(client: ServiceClient, case: str) -> None:
    image, field = IMAGES[case]
    message = chat_pb2.Message(role=chat_pb2.ROLE_USER, content="look", parts=[chat_pb2.ContentPart(image=image)])
    with pytest.raises(InvalidInput) as caught:
        await client.chat([message], model="gpt-4o-mini")
    assert caught.value.field == field, caught.value.message
