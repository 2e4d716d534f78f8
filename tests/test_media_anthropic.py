"""Documents in Anthropic's Messages API through a real grpc.aio ratd and the fake
Anthropic upstream: PDF bytes as a base64 ``document`` block, a PDF URL as a url source,
plain text as a text source, title and citations as asked; the answer's citations
(page and character locations) on ChatResponse.citations; audio refused for Anthropic."""

from __future__ import annotations

import base64

import pytest

from ratatoskr import ChatStreamCollector, Message, Part, UnsupportedParameter
from tests.fakes.anthropic_upstream import FakeAnthropicUpstream
from tests.support.daemon import daemon_client, make_config
from tests.test_media_openai import PDF, wav_bytes

pytestmark = pytest.mark.timeout(60)
KEY = "sk-ant-test-media-0123456789abcdef"


async def test_documents_go_as_document_blocks_and_citations_come_back() -> None:
    async with FakeAnthropicUpstream(api_key=KEY) as fake:
        config = make_config(
            f'[providers.anthropic]\nbase_url = "{fake.base_url}"\n',
            env={"ANTHROPIC_API_KEY": KEY},
        )
        message = Message.user(
            "Who runs on the tree?",
            parts=[
                Part.document(PDF, title="Yggdrasil", citations=True),
                Part.document("https://example.org/edda.pdf"),
                Part.document(b"The squirrel runs.", mime_type="text/plain"),
            ],
        )
        async with daemon_client(config) as client:
            reply = await client.chat([message], model="anthropic:cited")
            with pytest.raises(UnsupportedParameter) as refused:
                await client.chat(
                    [Message.user("x", parts=[Part.audio(wav_bytes())])], model="claude-haiku-4-5"
                )
        body = fake.last("/v1/messages").json
    blocks = body["messages"][0]["content"]
    assert blocks[0] == {
        "type": "document",
        "source": {
            "type": "base64",
            "media_type": "application/pdf",
            "data": base64.b64encode(PDF).decode(),
        },
        "title": "Yggdrasil",
        "citations": {"enabled": True},
    }
    assert blocks[1] == {
        "type": "document",
        "source": {"type": "url", "url": "https://example.org/edda.pdf"},
    }
    assert blocks[2]["source"] == {
        "type": "text",
        "media_type": "text/plain",
        "data": "The squirrel runs.",
    }
    assert blocks[3] == {"type": "text", "text": "Who runs on the tree?"}
    first, second = reply.citations
    assert (first.document_title, first.start_page, first.end_page) == ("Yggdrasil", 1, 2)
    assert first.cited_text == "Ratatoskr runs up and down the ash."
    assert (second.document_index, second.start_char, second.end_char) == (1, 4, 11)
    assert not second.HasField("start_page")
    assert refused.value.field == "messages[0].parts[0].audio"


async def test_citations_stream_as_events() -> None:
    async with FakeAnthropicUpstream(api_key=KEY) as fake:
        config = make_config(
            f'[providers.anthropic]\nbase_url = "{fake.base_url}"\n',
            env={"ANTHROPIC_API_KEY": KEY},
        )
        message = Message.user("Who runs?", parts=[Part.document(PDF, citations=True)])
        async with daemon_client(config) as client:
            events = [e async for e in client.chat_stream([message], model="anthropic:cited")]
            whole = await ChatStreamCollector.collect(
                client.chat_stream([message], model="anthropic:cited")
            )
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[:3] == ["citation", "citation", "content"]
    assert events[0].citation.start_page == 1 and events[1].citation.end_char == 11
    assert [c.cited_text for c in whole.citations] == [
        "Ratatoskr runs up and down the ash.",
        "the ash",
    ]
