"""AnthropicProvider through the real anthropic SDK against the local fake API."""

from __future__ import annotations

import copy
import socket
from collections.abc import AsyncIterator, Sequence

import pytest

from core.conversation import ImageBlock, Message, TextBlock, ToolResultBlock, ToolUseBlock
from core.providers.anthropic import AnthropicProvider
from core.providers.base import (
    ProviderChunk,
    ProviderError,
    ProviderRequest,
    StopChunk,
    TextChunk,
    ToolCallChunk,
    ToolSpec,
    UsageChunk,
)
from tests.fakes.llm_server import FakeLLMServer, Reply, Usage

KEY = "sk-ant-test-SECRET-1234567890"
MODEL = "claude-test"
EPHEMERAL = {"type": "ephemeral"}
TOOLS = (
    ToolSpec("get_time", "Current time", {"type": "object", "properties": {"tz": {"type": "string"}}}),
    ToolSpec("calc", "Arithmetic", {"type": "object", "properties": {"expression": {"type": "string"}}}),
)


@pytest.fixture
async def provider(llm_server: FakeLLMServer) -> AsyncIterator[AnthropicProvider]:
    provider = AnthropicProvider(KEY, llm_server.anthropic_base_url)
    yield provider
    await provider.aclose()


def request(
    *messages: Message, system: str = "You are terse.", tools: Sequence[ToolSpec] = ()
) -> ProviderRequest:
    return ProviderRequest(MODEL, system, messages or (Message.user("hi"),), tools=tools, max_tokens=256)


async def collect(provider: AnthropicProvider, req: ProviderRequest) -> list[ProviderChunk]:
    return [chunk async for chunk in provider.stream(req)]


async def failure(provider: AnthropicProvider, req: ProviderRequest) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await collect(provider, req)
    return caught.value


def tool_turn() -> list[Message]:
    return [
        Message.user("What time is it in UTC?"),
        Message(
            "assistant", (TextBlock("Let me check."), ToolUseBlock("toolu_01", "get_time", {"tz": "UTC"}))
        ),
        Message("user", (ToolResultBlock("toolu_01", "12:00"),)),
    ]


# --- streaming ---------------------------------------------------------------------------------------


async def test_text_streams_in_order(provider: AnthropicProvider, llm_server: FakeLLMServer) -> None:
    # Apart in time, so each is its own network read (what arrives together is one chunk).
    llm_server.script("anthropic", Reply.text("Hello world, how are you?", chunks=4, delay_s=0.02))
    chunks = await collect(provider, request())
    texts = [c.text for c in chunks if isinstance(c, TextChunk)]
    assert len(texts) == 4
    assert "".join(texts) == "Hello world, how are you?"
    assert isinstance(chunks[-2], UsageChunk)
    assert chunks[-1] == StopChunk("end_turn")


async def test_request_headers_and_body(provider: AnthropicProvider, llm_server: FakeLLMServer) -> None:
    await collect(provider, request(Message.user("hi")))
    sent = llm_server.requests[-1]
    assert sent.path == "/v1/messages"
    # anthropic 2.x sends the key as a Bearer token; 0.x sent x-api-key. The API accepts both.
    assert KEY in (
        sent.headers.get("x-api-key"),
        sent.headers.get("authorization", "").removeprefix("Bearer "),
    )
    assert sent.headers["anthropic-version"]
    assert sent.body["model"] == MODEL
    assert sent.body["max_tokens"] == 256
    assert sent.body["stream"] is True
    assert sent.body["system"] == [{"type": "text", "text": "You are terse.", "cache_control": EPHEMERAL}]
    assert sent.body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": EPHEMERAL}]}
    ]
    assert "tools" not in sent.body


async def test_empty_system_prompt_is_left_out(
    provider: AnthropicProvider, llm_server: FakeLLMServer
) -> None:
    await collect(provider, request(system="  "))
    assert "system" not in llm_server.requests[-1].body


async def test_unscripted_call_echoes_last_user_text(provider: AnthropicProvider) -> None:
    chunks = await collect(provider, request(Message.user("ping me")))
    assert "".join(c.text for c in chunks if isinstance(c, TextChunk)) == "echo: ping me"


async def test_usage_maps_cache_tokens(provider: AnthropicProvider, llm_server: FakeLLMServer) -> None:
    usage = Usage(input=120, output=33, cache_read=4000, cache_write=700)
    llm_server.script("anthropic", Reply.text("ok", usage=usage))
    chunks = await collect(provider, request())
    assert [c for c in chunks if isinstance(c, UsageChunk)] == [UsageChunk(120, 33, 4000, 700)]


async def test_consumer_can_stop_early(provider: AnthropicProvider, llm_server: FakeLLMServer) -> None:
    llm_server.script("anthropic", Reply.text("one two three four five", chunks=5, delay_s=0.01))
    stream = provider.stream(request())
    first = await anext(stream)
    await stream.aclose()  # what a cancelled turn does; must not raise or leak the connection
    assert isinstance(first, TextChunk)


# --- tools -------------------------------------------------------------------------------------------


async def test_tool_round_trip_wire_shape(provider: AnthropicProvider, llm_server: FakeLLMServer) -> None:
    history = tool_turn()
    history[-1] = Message("user", (TextBlock("be quick"), ToolResultBlock("toolu_01", "boom", is_error=True)))
    llm_server.script("anthropic", Reply.text("It is noon."))
    await collect(provider, request(*history, tools=TOOLS))
    body = llm_server.requests[-1].body
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "What time is it in UTC?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_01", "name": "get_time", "input": {"tz": "UTC"}},
            ],
        },
        {
            "role": "user",
            "content": [  # tool results first: the API requires it
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "boom", "is_error": True},
                {"type": "text", "text": "be quick", "cache_control": EPHEMERAL},
            ],
        },
    ]


async def test_parallel_tool_calls(provider: AnthropicProvider, llm_server: FakeLLMServer) -> None:
    reply = Reply.text_then_tools(
        "Checking both.", ("get_time", {"tz": "UTC"}, "toolu_a"), ("calc", {"expression": "2+2"}, "toolu_b")
    )
    llm_server.script("anthropic", reply)
    chunks = await collect(provider, request(tools=TOOLS))
    calls = [c for c in chunks if isinstance(c, ToolCallChunk)]
    assert calls == [
        ToolCallChunk("toolu_a", "get_time", {"tz": "UTC"}),
        ToolCallChunk("toolu_b", "calc", {"expression": "2+2"}),
    ]
    assert chunks[-1] == StopChunk("tool_use")


async def test_tool_call_without_arguments(provider: AnthropicProvider, llm_server: FakeLLMServer) -> None:
    llm_server.script("anthropic", Reply.tool_calls(("get_time", {}, "toolu_x")))
    chunks = await collect(provider, request(tools=TOOLS))
    assert ToolCallChunk("toolu_x", "get_time", {}) in chunks


# --- prompt caching ----------------------------------------------------------------------------------


async def test_cache_marks_on_system_last_tool_and_last_block(
    provider: AnthropicProvider, llm_server: FakeLLMServer
) -> None:
    await collect(provider, request(*tool_turn(), tools=TOOLS))
    body = llm_server.requests[-1].body
    assert body["system"][0]["cache_control"] == EPHEMERAL
    assert [t.get("cache_control") for t in body["tools"]] == [None, EPHEMERAL]
    marked = [
        (i, j)
        for i, m in enumerate(body["messages"])
        for j, b in enumerate(m["content"])
        if "cache_control" in b
    ]
    assert marked == [(2, 0)]  # only the very last block of the conversation


async def test_memoised_wire_forms_are_reused_and_never_mutated(
    provider: AnthropicProvider, llm_server: FakeLLMServer
) -> None:
    history = tool_turn()
    await collect(provider, request(*history, tools=TOOLS))
    memo = [m.cache["anthropic.wire"] for m in history]
    snapshot = copy.deepcopy(memo)
    history += [Message.assistant("It is noon."), Message.user("thanks")]
    await collect(provider, request(*history, tools=TOOLS))
    assert [m.cache["anthropic.wire"] for m in history[:3]] == snapshot
    assert all(a is b for a, b in zip(memo, (m.cache["anthropic.wire"] for m in history), strict=False))
    first, second = (r.body["messages"] for r in llm_server.requests[-2:])
    assert "cache_control" in first[2]["content"][-1]  # was last in call one...
    assert "cache_control" not in second[2]["content"][-1]  # ...and is plain history in call two
    assert second[-1]["content"][-1]["cache_control"] == EPHEMERAL


# --- conversion details ------------------------------------------------------------------------------


async def test_images_base64_and_url(provider: AnthropicProvider, llm_server: FakeLLMServer) -> None:
    blocks = (
        TextBlock("What is in these?"),
        ImageBlock("image/png", data_b64="iVBORw0KGgo="),
        ImageBlock("image/jpeg", url="https://example.com/cat.jpg"),
    )
    await collect(provider, request(Message("user", blocks)))
    content = llm_server.requests[-1].body["messages"][0]["content"]
    assert content[1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }
    assert content[2]["source"] == {"type": "url", "url": "https://example.com/cat.jpg"}


async def test_same_role_runs_are_merged_and_empty_turns_dropped(
    provider: AnthropicProvider, llm_server: FakeLLMServer
) -> None:
    history = [Message.user("first"), Message.assistant("   "), Message.user("second")]
    await collect(provider, request(*history))
    messages = llm_server.requests[-1].body["messages"]
    assert [m["role"] for m in messages] == ["user"]
    assert [b["text"] for b in messages[0]["content"]] == ["first", "second"]


async def test_history_from_openai_is_accepted(
    provider: AnthropicProvider, llm_server: FakeLLMServer
) -> None:
    # A session that started on an OpenAI-compatible server whose tool ids Anthropic would refuse.
    history = [
        Message.user("add these"),
        Message("assistant", (ToolUseBlock("call:7/abc", "calc", {"expression": "1+2"}),)),
        Message("user", (ToolResultBlock("call:7/abc", "3"), TextBlock("and explain"))),
    ]
    llm_server.script("anthropic", Reply.text("It is 3."))
    chunks = await collect(provider, request(*history, tools=TOOLS))
    assert chunks[-1] == StopChunk("end_turn")  # the fake would have answered 400 otherwise
    messages = llm_server.requests[-1].body["messages"]
    assert messages[1]["content"][0]["id"] == messages[2]["content"][0]["tool_use_id"] == "call_7_abc"


# --- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("header", "expected"), [("retry-after", 0.05), ("retry-after-ms", 0.25)])
async def test_rate_limit_is_retryable_with_retry_after(
    provider: AnthropicProvider, llm_server: FakeLLMServer, header: str, expected: float
) -> None:
    llm_server.script("anthropic", Reply.rate_limited(retry_after=expected, header=header))
    error = await failure(provider, request())
    assert (error.retryable, error.status) == (True, 429)
    assert error.retry_after == pytest.approx(expected)


@pytest.mark.parametrize("reply", [Reply.server_error(500), Reply.server_error(503), Reply.overloaded()])
async def test_server_errors_are_retryable(
    provider: AnthropicProvider, llm_server: FakeLLMServer, reply: Reply
) -> None:
    llm_server.script("anthropic", reply)
    error = await failure(provider, request())
    assert error.retryable
    assert error.status == reply.status


async def test_bad_key_is_final_and_not_echoed(
    provider: AnthropicProvider, llm_server: FakeLLMServer
) -> None:
    llm_server.api_keys = {"sk-ant-the-right-one"}
    error = await failure(provider, request())
    assert (error.retryable, error.status, error.message) == (
        False,
        401,
        "Anthropic rejected the API key (401)",
    )
    assert KEY not in str(error)


async def test_unknown_model_is_final(provider: AnthropicProvider, llm_server: FakeLLMServer) -> None:
    llm_server.unknown_models.add(MODEL)
    error = await failure(provider, request())
    assert (error.retryable, error.status) == (False, 404)
    assert error.message == f"Anthropic does not know model '{MODEL}' (404)"


async def test_bad_request_carries_the_api_message(provider: AnthropicProvider) -> None:
    # A tool_use without its tool_result: the API refuses, and says why.
    history = [*tool_turn()[:2], Message.user("never mind")]
    error = await failure(provider, request(*history, tools=TOOLS))
    assert (error.retryable, error.status) == (False, 400)
    assert error.message.startswith(
        "Anthropic rejected the request (400): messages.2: `tool_use` ids were found"
    )


@pytest.mark.parametrize("abort", [True, False])
async def test_cut_stream_is_retryable(
    provider: AnthropicProvider, llm_server: FakeLLMServer, abort: bool
) -> None:
    llm_server.script("anthropic", Reply.cut(after_chunks=2, abort=abort))
    seen: list[ProviderChunk] = []
    with pytest.raises(ProviderError) as caught:
        async for chunk in provider.stream(request()):
            seen.append(chunk)
    assert "".join(c.text for c in seen if isinstance(c, TextChunk)) == "this answer nev"  # 2 of 3
    assert all(isinstance(c, TextChunk) for c in seen)
    assert caught.value.retryable
    assert caught.value.message == "the response stream from Anthropic was cut off"


@pytest.mark.parametrize(
    ("error_type", "retryable", "status"),
    [("overloaded_error", True, 529), ("api_error", True, 500), ("invalid_request_error", False, 400)],
)
async def test_error_event_mid_stream(
    provider: AnthropicProvider, llm_server: FakeLLMServer, error_type: str, retryable: bool, status: int
) -> None:
    llm_server.script("anthropic", Reply.stream_error(after_chunks=1, error_type=error_type))
    error = await failure(provider, request())
    assert (error.retryable, error.status) == (retryable, status)
    assert error_type in error.message


async def test_unreachable_server_is_retryable() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = AnthropicProvider(KEY, f"http://127.0.0.1:{port}")
    try:
        error = await failure(provider, request())
    finally:
        await provider.aclose()
    assert error.retryable
    assert error.message == "could not connect to Anthropic"


async def test_missing_key_is_a_provider_error(
    llm_server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    provider = AnthropicProvider(None, llm_server.anthropic_base_url)
    try:
        error = await failure(provider, request())
    finally:
        await provider.aclose()
    assert not error.retryable
    assert "ANTHROPIC_API_KEY" in error.message
