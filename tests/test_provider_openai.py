"""OpenAIProvider through the real openai SDK against the local fake API."""

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
from core.providers.openai import OpenAIProvider
from tests.fakes.llm_server import FakeLLMServer, Reply, Usage

KEY = "sk-test-SECRET-1234567890"
MODEL = "gpt-test"
TOOLS = (
    ToolSpec("get_time", "Current time", {"type": "object", "properties": {"tz": {"type": "string"}}}),
    ToolSpec("calc", "Arithmetic", {"type": "object", "properties": {"expression": {"type": "string"}}}),
)
Provider = OpenAIProvider | AnthropicProvider


@pytest.fixture
async def provider(llm_server: FakeLLMServer) -> AsyncIterator[OpenAIProvider]:
    provider = OpenAIProvider(KEY, llm_server.openai_base_url)
    yield provider
    await provider.aclose()


def request(
    *messages: Message, system: str = "You are terse.", tools: Sequence[ToolSpec] = ()
) -> ProviderRequest:
    return ProviderRequest(MODEL, system, messages or (Message.user("hi"),), tools=tools, max_tokens=256)


async def collect(provider: Provider, req: ProviderRequest) -> list[ProviderChunk]:
    return [chunk async for chunk in provider.stream(req)]


async def failure(provider: Provider, req: ProviderRequest) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await collect(provider, req)
    return caught.value


def tool_turn() -> list[Message]:
    return [
        Message.user("What time is it in UTC?"),
        Message(
            "assistant", (TextBlock("Let me check."), ToolUseBlock("call_01", "get_time", {"tz": "UTC"}))
        ),
        Message("user", (ToolResultBlock("call_01", "12:00"),)),
    ]


# --- streaming ---------------------------------------------------------------------------------------


async def test_text_streams_in_order(provider: OpenAIProvider, llm_server: FakeLLMServer) -> None:
    # Apart in time, so each is its own network read (what arrives together is one chunk).
    llm_server.script("openai", Reply.text("Hello world, how are you?", chunks=4, delay_s=0.02))
    chunks = await collect(provider, request())
    texts = [c.text for c in chunks if isinstance(c, TextChunk)]
    assert len(texts) == 4
    assert "".join(texts) == "Hello world, how are you?"
    assert isinstance(chunks[-2], UsageChunk)
    assert chunks[-1] == StopChunk("end_turn")


async def test_request_headers_and_body(provider: OpenAIProvider, llm_server: FakeLLMServer) -> None:
    await collect(provider, request(Message.user("hi")))
    sent = llm_server.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.body["model"] == MODEL
    assert sent.body["stream"] is True
    assert sent.body["stream_options"] == {"include_usage": True}
    assert sent.body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "hi"},
    ]
    # A compatible server gets the widely known `max_tokens`...
    assert sent.body["max_tokens"] == 256
    assert "max_completion_tokens" not in sent.body
    assert "tools" not in sent.body  # an empty list would be rejected


async def test_official_api_gets_max_completion_tokens(
    provider: OpenAIProvider, llm_server: FakeLLMServer
) -> None:
    official = OpenAIProvider(KEY)  # api.openai.com
    assert official.official
    await official.aclose()
    provider.official = True  # ...pretend the fake is api.openai.com
    await collect(provider, request())
    body = llm_server.requests[-1].body
    assert body["max_completion_tokens"] == 256
    assert "max_tokens" not in body


async def test_keyless_compatible_server(llm_server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    provider = OpenAIProvider(None, llm_server.openai_base_url)  # e.g. Ollama: the SDK still wants a key
    try:
        chunks = await collect(provider, request())
    finally:
        await provider.aclose()
    assert chunks[-1] == StopChunk("end_turn")
    assert llm_server.requests[-1].headers["authorization"] == "Bearer unused"


async def test_missing_key_for_openai_is_a_provider_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    provider = OpenAIProvider(None)
    error = await failure(provider, request())
    await provider.aclose()
    assert not error.retryable
    assert "OPENAI_API_KEY" in error.message


async def test_usage_maps_cached_tokens(provider: OpenAIProvider, llm_server: FakeLLMServer) -> None:
    # On the wire prompt_tokens = 120 + 4000 + 700, of which 4000 cached and 700 written to the cache.
    usage = Usage(input=120, output=33, cache_read=4000, cache_write=700)
    llm_server.script("openai", Reply.text("ok", usage=usage))
    chunks = await collect(provider, request())
    assert [c for c in chunks if isinstance(c, UsageChunk)] == [UsageChunk(120, 33, 4000, 700)]


async def test_no_usage_chunk_means_no_usage(provider: OpenAIProvider, llm_server: FakeLLMServer) -> None:
    llm_server.script("openai", Reply.text("ok").with_(send_usage=False))  # as some compatible servers do
    chunks = await collect(provider, request())
    assert chunks == [TextChunk("ok"), StopChunk("end_turn")]


async def test_consumer_can_stop_early(provider: OpenAIProvider, llm_server: FakeLLMServer) -> None:
    llm_server.script("openai", Reply.text("one two three four five", chunks=5, delay_s=0.01))
    stream = provider.stream(request())
    first = await anext(stream)
    await stream.aclose()
    assert isinstance(first, TextChunk)


# --- tools -------------------------------------------------------------------------------------------


async def test_tool_round_trip_wire_shape(provider: OpenAIProvider, llm_server: FakeLLMServer) -> None:
    history = tool_turn()
    history[-1] = Message("user", (TextBlock("be quick"), ToolResultBlock("call_01", "boom", is_error=True)))
    llm_server.script("openai", Reply.text("It is noon."))
    await collect(provider, request(*history, tools=TOOLS))
    body = llm_server.requests[-1].body
    function = {"name": "get_time", "arguments": '{"tz": "UTC"}'}
    assert body["messages"][1:] == [
        {"role": "user", "content": "What time is it in UTC?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [{"id": "call_01", "type": "function", "function": function}],
        },
        {"role": "tool", "tool_call_id": "call_01", "content": "ERROR: boom"},  # tool replies come first
        {"role": "user", "content": "be quick"},
    ]
    assert body["tools"][0] == {
        "type": "function",
        "function": {"name": "get_time", "description": "Current time", "parameters": TOOLS[0].input_schema},
    }


async def test_assistant_with_only_tool_calls_has_null_content(
    provider: OpenAIProvider, llm_server: FakeLLMServer
) -> None:
    history = tool_turn()
    history[1] = Message("assistant", (ToolUseBlock("call_01", "get_time", {"tz": "UTC"}),))
    await collect(provider, request(*history, tools=TOOLS))
    assert llm_server.requests[-1].body["messages"][2]["content"] is None


async def test_parallel_tool_calls(provider: OpenAIProvider, llm_server: FakeLLMServer) -> None:
    reply = Reply.text_then_tools(
        "Checking both.", ("get_time", {"tz": "UTC"}, "call_a"), ("calc", {"expression": "2+2"}, "call_b")
    )
    llm_server.script("openai", reply)
    chunks = await collect(provider, request(tools=TOOLS))
    calls = [c for c in chunks if isinstance(c, ToolCallChunk)]
    assert calls == [
        ToolCallChunk("call_a", "get_time", {"tz": "UTC"}),
        ToolCallChunk("call_b", "calc", {"expression": "2+2"}),
    ]
    assert chunks[-1] == StopChunk("tool_use")


async def test_invalid_tool_arguments(provider: OpenAIProvider, llm_server: FakeLLMServer) -> None:
    llm_server.script("openai", Reply.invalid_tool_args("calc", '{"expression": "1+'))
    chunks = await collect(provider, request(tools=TOOLS))
    [call] = [c for c in chunks if isinstance(c, ToolCallChunk)]
    assert (call.name, call.input, call.raw_arguments) == ("calc", None, '{"expression": "1+')
    assert call.id.startswith("call_")


async def test_stop_with_tool_calls_means_tool_use(
    provider: OpenAIProvider, llm_server: FakeLLMServer
) -> None:
    # Some compatible servers finish a tool-calling turn with "stop".
    llm_server.script("openai", Reply.tool_calls(("get_time", {"tz": "UTC"})).with_(stop_reason="end_turn"))
    chunks = await collect(provider, request(tools=TOOLS))
    assert chunks[-1] == StopChunk("tool_use")


# --- caching of wire forms, images -------------------------------------------------------------------


async def test_memoised_wire_forms_are_reused_and_never_mutated(
    provider: OpenAIProvider, llm_server: FakeLLMServer
) -> None:
    history = tool_turn()
    await collect(provider, request(*history, tools=TOOLS))
    memo = [m.cache["openai.wire"] for m in history]
    snapshot = copy.deepcopy(memo)
    history += [Message.assistant("It is noon."), Message.user("thanks")]
    await collect(provider, request(*history, tools=TOOLS))
    assert [m.cache["openai.wire"] for m in history[:3]] == snapshot
    assert all(a is b for a, b in zip(memo, (m.cache["openai.wire"] for m in history), strict=False))
    first, second = (r.body["messages"] for r in llm_server.requests[-2:])
    assert second[: len(first)] == first  # the prefix is byte-identical, so the server cache can hit


async def test_images_as_data_and_plain_urls(provider: OpenAIProvider, llm_server: FakeLLMServer) -> None:
    blocks = (
        TextBlock("What is in these?"),
        ImageBlock("image/png", data_b64="iVBORw0KGgo="),
        ImageBlock("image/jpeg", url="https://example.com/cat.jpg"),
    )
    await collect(provider, request(Message("user", blocks)))
    content = llm_server.requests[-1].body["messages"][1]["content"]
    assert content == [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]


# --- switching providers mid-conversation ------------------------------------------------------------


def mixed_history() -> list[Message]:
    return [
        Message.user("What time is it?"),
        Message("assistant", (ToolUseBlock("toolu_01A", "get_time", {"tz": "UTC"}),)),
        Message("user", (ToolResultBlock("toolu_01A", "12:00"), TextBlock("also add 2+2"))),
        Message("assistant", (TextBlock("Noon."), ToolUseBlock("toolu_01B", "calc", {"expression": "2+2"}))),
        Message("user", (ToolResultBlock("toolu_01B", "4"),)),
    ]


async def test_history_switches_between_providers(
    provider: OpenAIProvider, llm_server: FakeLLMServer
) -> None:
    anthropic = AnthropicProvider("sk-ant-test", llm_server.anthropic_base_url)
    history = mixed_history()
    try:
        # Both fakes answer 400 if the pairing or shape is wrong, so the stop chunk is the assertion.
        assert (await collect(anthropic, request(*history, tools=TOOLS)))[-1] == StopChunk("end_turn")
        assert (await collect(provider, request(*history, tools=TOOLS)))[-1] == StopChunk("end_turn")
        llm_server.script("openai", Reply.tool_calls(("calc", {"expression": "3*3"}, "call_Z9")))
        chunks = await collect(provider, request(*history, tools=TOOLS))
        [call] = [c for c in chunks if isinstance(c, ToolCallChunk)]
        history += [Message("assistant", (ToolUseBlock(call.id, call.name, call.input or {}),))]
        history += [Message("user", (ToolResultBlock(call.id, "9"),))]
        assert (await collect(anthropic, request(*history, tools=TOOLS)))[-1] == StopChunk("end_turn")
    finally:
        await anthropic.aclose()
    assert [r.provider for r in llm_server.requests] == ["anthropic", "openai", "openai", "anthropic"]


# --- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("header", "expected"), [("retry-after", 0.05), ("retry-after-ms", 0.25)])
async def test_rate_limit_is_retryable_with_retry_after(
    provider: OpenAIProvider, llm_server: FakeLLMServer, header: str, expected: float
) -> None:
    llm_server.script("openai", Reply.rate_limited(retry_after=expected, header=header))
    error = await failure(provider, request())
    assert (error.retryable, error.status) == (True, 429)
    assert error.retry_after == pytest.approx(expected)


async def test_exhausted_quota_is_final(provider: OpenAIProvider, llm_server: FakeLLMServer) -> None:
    llm_server.script(
        "openai", Reply.error(429, "You exceeded your current quota", error_type="insufficient_quota")
    )
    error = await failure(provider, request())
    assert (error.retryable, error.status) == (False, 429)


@pytest.mark.parametrize("reply", [Reply.server_error(500), Reply.server_error(502), Reply.overloaded()])
async def test_server_errors_are_retryable(
    provider: OpenAIProvider, llm_server: FakeLLMServer, reply: Reply
) -> None:
    llm_server.script("openai", reply)
    error = await failure(provider, request())
    assert error.retryable
    assert error.status is not None and error.status >= 500


async def test_bad_key_is_final_and_not_echoed(provider: OpenAIProvider, llm_server: FakeLLMServer) -> None:
    llm_server.api_keys = {"sk-the-right-one"}  # the fake's 401 text quotes the wrong key in full
    error = await failure(provider, request())
    host = f"127.0.0.1:{llm_server.port}"
    assert (error.retryable, error.status) == (False, 401)
    assert error.message == f"the OpenAI-compatible server at {host} rejected the API key (401)"
    assert KEY not in str(error)


async def test_unknown_model_is_final(provider: OpenAIProvider, llm_server: FakeLLMServer) -> None:
    llm_server.unknown_models.add(MODEL)
    error = await failure(provider, request())
    assert (error.retryable, error.status) == (False, 404)
    assert error.message.endswith(f"does not know model '{MODEL}' (404)")


async def test_bad_request_carries_the_api_message(provider: OpenAIProvider) -> None:
    history = [*tool_turn()[:2], Message.user("never mind")]  # a tool call left unanswered
    error = await failure(provider, request(*history, tools=TOOLS))
    assert (error.retryable, error.status) == (False, 400)
    assert "did not have response messages: call_01" in error.message


@pytest.mark.parametrize("abort", [True, False])
async def test_cut_stream_is_retryable(
    provider: OpenAIProvider, llm_server: FakeLLMServer, abort: bool
) -> None:
    llm_server.script("openai", Reply.cut(after_chunks=2, abort=abort))
    seen: list[ProviderChunk] = []
    with pytest.raises(ProviderError) as caught:
        async for chunk in provider.stream(request()):
            seen.append(chunk)
    assert "".join(c.text for c in seen if isinstance(c, TextChunk)) == "this answer nev"  # 2 of 3
    assert all(isinstance(c, TextChunk) for c in seen)
    assert caught.value.retryable
    host = f"127.0.0.1:{llm_server.port}"
    assert (
        caught.value.message == f"the response stream from the OpenAI-compatible server at {host} was cut off"
    )


async def test_error_frame_mid_stream_is_retryable(
    provider: OpenAIProvider, llm_server: FakeLLMServer
) -> None:
    llm_server.script("openai", Reply.stream_error(after_chunks=1, message="The server had an error"))
    error = await failure(provider, request())
    assert error.retryable
    assert "The server had an error" in error.message


async def test_unreachable_server_is_retryable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = OpenAIProvider(KEY, f"http://127.0.0.1:{port}/v1")
    try:
        error = await failure(provider, request())
    finally:
        await provider.aclose()
    assert error.retryable
    assert error.message == f"could not connect to the OpenAI-compatible server at 127.0.0.1:{port}"
