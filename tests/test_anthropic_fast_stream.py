"""The fast Anthropic SSE path yields exactly what the SDK's own stream helper path yielded.

Each case is a recorded SSE body, served as written (chunk boundaries included) by a tiny aiohttp server
on 127.0.0.1. The same bytes go through `AnthropicProvider.stream` (our decoder) and through a reference
that drives the SDK's `messages.stream` helper as the provider did before the fast path; both must give
the same chunks and the same ProviderError.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import pytest

from core.providers.anthropic import _CUT_OFF, AnthropicProvider, _map_exception, _scrub, build_params
from core.providers.anthropic_stream import AnthropicStreamDecoder, StreamErrorEvent
from core.providers.base import (
    ProviderChunk,
    ProviderError,
    StopChunk,
    TextChunk,
    ToolCallChunk,
    UsageChunk,
)
from tests.fakes import recorded_sse
from tests.fakes.recorded_sse import (
    Case,
    Outcome,
    case_request,
    error_fields,
    fast_path_outcome,
    split_bytes,
    text_runs,
)

KEY = "sk-ant-test-SECRET-1234567890"
REQUEST_ID = "req_fixed0123456789"


# --- recorded streams --------------------------------------------------------------------------------


def sse(event: str | None, data: Any, *, crlf: bool = False) -> bytes:
    body = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    text = (f"event: {event}\n" if event is not None else "") + f"data: {body}\n\n"
    return (text.replace("\n", "\r\n") if crlf else text).encode()


def start(
    input_tokens: int = 10, output: int = 1, cache_read: int = 0, cache_write: int = 0, content: Any = ()
) -> bytes:
    usage = {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cache_read,
        "output_tokens": output,
        "service_tier": "standard",
    }
    message = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": list(content),
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    return sse("message_start", {"type": "message_start", "message": message})


def ping() -> bytes:
    return sse("ping", {"type": "ping"})


def block_start(index: int, block: dict[str, Any]) -> bytes:
    return sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})


def delta(index: int, body: dict[str, Any]) -> bytes:
    return sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": body})


def text(index: int, value: str) -> bytes:
    return delta(index, {"type": "text_delta", "text": value})


def fragment(index: int, value: str) -> bytes:
    return delta(index, {"type": "input_json_delta", "partial_json": value})


def block_stop(index: int) -> bytes:
    return sse("content_block_stop", {"type": "content_block_stop", "index": index})


def text_block(index: int, *pieces: str) -> list[bytes]:
    return [
        block_start(index, {"type": "text", "text": ""}),
        *(text(index, p) for p in pieces),
        block_stop(index),
    ]


def tool_block(index: int, tool_id: str, name: str, *fragments: str) -> list[bytes]:
    return [
        block_start(index, {"type": "tool_use", "id": tool_id, "name": name, "input": {}}),
        *(fragment(index, f) for f in fragments),
        block_stop(index),
    ]


def end(stop_reason: str | None = "end_turn", output: int = 5, **usage: int) -> list[bytes]:
    message_delta = {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": {"output_tokens": output, **usage},
    }
    return [sse("message_delta", message_delta), sse("message_stop", {"type": "message_stop"})]


def error_frame(error_type: str, message: str) -> bytes:
    return sse("error", {"type": "error", "error": {"type": error_type, "message": message}})


UNICODE = "Grüße 👋🏽 — 日本語のテキスト, ça va? 🇫🇷"
CASES: dict[str, Case] = {
    "text_only": Case.of(start(), ping(), text_block(0, "Hello", " world", ", how", " are you?"), end()),
    "text_and_tools": Case.of(
        start(),
        ping(),
        text_block(0, "Checking", " both."),
        tool_block(1, "toolu_a", "get_time", "", '{"tz"', ': "UT', 'C"}'),
        tool_block(2, "toolu_b", "calc", "", '{"expression": "2', '+2", "note": "ä\\u00e4"', "}"),
        tool_block(3, "toolu_c", "nested", '{"a": [1, {"b": null}], ', '"c": 1.5e3, "d": tr', "ue}"),
        end("tool_use"),
    ),
    "tool_without_arguments": Case.of(start(), tool_block(0, "toolu_x", "get_time", ""), end("tool_use")),
    "tool_with_no_fragments": Case.of(start(), tool_block(0, "toolu_x", "get_time"), end("tool_use")),
    "tool_arguments_not_an_object": Case.of(
        start(), tool_block(0, "toolu_l", "calc", "[1, ", '2, "x"]'), end("tool_use")
    ),
    "tool_arguments_truncated": Case.of(
        start(), tool_block(0, "toolu_t", "calc", '{"expression": "1+', '", "more": [1, 2'), end("tool_use")
    ),
    "tool_arguments_invalid": Case.of(
        start(), text_block(0, "ok"), tool_block(1, "toolu_i", "calc", '{"a" ', "1}"), end("tool_use")
    ),
    "usage_with_cache_tokens": Case.of(
        start(input_tokens=120, cache_read=4000, cache_write=700), text_block(0, "ok"), end(output=33)
    ),
    "usage_overridden_by_message_delta": Case.of(
        start(input_tokens=120, cache_read=4000, cache_write=700),
        text_block(0, "ok"),
        end(output=40, input_tokens=125, cache_read_input_tokens=4100),
    ),
    **{
        f"stop_{reason}": Case.of(start(), text_block(0, "stopping"), end(reason))
        for reason in ("end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal")
    },
    "stop_reason_null": Case.of(start(), text_block(0, "hm"), end(None)),
    "error_event_overloaded": Case.of(
        start(), text_block(0, "partial")[:2], error_frame("overloaded_error", "Overloaded")
    ),
    "error_event_api_error": Case.of(
        start(), text_block(0, "a", "b")[:2], error_frame("api_error", "Internal")
    ),
    "error_event_rate_limit": Case.of(start(), error_frame("rate_limit_error", "slow down")),
    "error_event_invalid_request": Case.of(
        start(), text_block(0, "x")[:2], error_frame("invalid_request_error", "prompt is too long")
    ),
    "error_event_echoes_the_key": Case.of(start(), error_frame("api_error", f"bad key {KEY}")),
    "error_event_not_json": Case.of(start(), text_block(0, "x")[:2], sse("error", "upstream went away")),
    "error_event_without_message": Case.of(start(), sse("error", {"type": "error", "error": {}})),
    "error_event_before_message_start": Case.of(error_frame("overloaded_error", "Overloaded")),
    "malformed_frame": Case.of(
        start(), text_block(0, "a")[:2], b'event: content_block_delta\ndata: {"type": \n\n'
    ),
    "malformed_nan_frame_json_accepts": Case.of(
        start(),
        text_block(0, "a")[:2],
        b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, "delta": '
        b'{"type": "text_delta", "text": "b"}, "x": NaN}\n\n',
        block_stop(0),
        end(),
    ),
    "invalid_utf8_frame": Case.of(start(), text_block(0, "a")[:2], b'event: x\ndata: {"t": "\xff"}\n\n'),
    "cut_clean_before_terminal_event": Case.of(start(), text_block(0, "one", " two")[:3]),
    "cut_abort_before_terminal_event": Case.of(start(), text_block(0, "one", " two")[:3], abort=True),
    "cut_after_message_delta": Case.of(start(), text_block(0, "one"), end()[:1]),
    "cut_inside_a_frame": Case.of(
        start(), text_block(0, "one")[:2], b'event: content_block_delta\ndata: {"ty'
    ),
    "cut_before_final_blank_line": Case.of(
        start(), text_block(0, "one"), end()[0], b'event: message_stop\ndata: {"type": "message_stop"}\n'
    ),
    "empty_body": Case.of(),
    "empty_deltas": Case.of(
        start(),
        text_block(0, "", "a", "", "b", ""),
        tool_block(1, "toolu_e", "calc", "", "", '{"x": 1}', ""),
        end("tool_use"),
    ),
    "unicode_split_across_chunks": Case(
        tuple(split_bytes(b"".join([start(), *text_block(0, *UNICODE.split(" ")), *end()]), 7))
    ),
    "unicode_one_byte_chunks": Case(
        tuple(split_bytes(b"".join([start(), *text_block(0, UNICODE[:9], UNICODE[9:]), *end()]), 1))
    ),
    "error_event_in_one_chunk_with_text": Case(
        (b"".join([start(), *text_block(0, "a", "b")[:3], error_frame("api_error", "boom")]),)
    ),
    "malformed_frame_in_one_chunk_with_text": Case(
        (b"".join([start(), *text_block(0, "a", "b")[:3], b"event: message_delta\ndata: {oops}\n\n"]),)
    ),
    "whole_body_in_one_chunk": Case((b"".join([start(), *text_block(0, "a", "b"), *end()]),)),
    "crlf_line_endings": Case.of(
        sse("message_start", json.loads(start().decode().split("data: ", 1)[1]), crlf=True),
        [c.replace(b"\n", b"\r\n") for c in text_block(0, "crlf", " text")],
        [c.replace(b"\n", b"\r\n") for c in end()],
    ),
    "bare_cr_line_endings": Case.of(start(), [c.replace(b"\n", b"\r") for c in text_block(0, "cr")], end()),
    "comments_ids_retry_and_multiline_data": Case.of(
        b": keep-alive\n\n",
        start(),
        b"id: 7\nretry: 1000\n\n",
        b'event: content_block_start\ndata: {"type": "content_block_start", "index": 0,\n'
        b'data: "content_block": {"type": "text", "text": ""}}\n\n',
        text(0, "multi"),
        b'event:content_block_delta\ndata:{"type": "content_block_delta", "index": 0, '
        b'"delta": {"type": "text_delta", "text": " line"}}\n\n',
        block_stop(0),
        end(),
    ),
    "frames_without_event_line_are_skipped": Case.of(
        start(),
        text_block(0, "seen"),
        sse(
            None,
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "unseen"}},
        ),
        end(),
    ),
    "frames_with_empty_data_are_skipped": Case.of(
        start(),
        b"event: content_block_delta\ndata: \n\n",
        b"event: content_block_delta\n\n",
        text_block(0, "x"),
        end(),
    ),
    "thinking_and_redacted_blocks_are_ignored": Case.of(
        start(),
        block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
        delta(0, {"type": "thinking_delta", "thinking": "Let me think"}),
        delta(0, {"type": "signature_delta", "signature": "sig=="}),
        block_stop(0),
        block_start(1, {"type": "redacted_thinking", "data": "opaque"}),
        block_stop(1),
        text_block(2, "Answer."),
        end(),
    ),
    "deltas_of_the_wrong_kind_are_ignored": Case.of(
        start(),
        block_start(0, {"type": "text", "text": "initial text is not streamed"}),
        fragment(0, '{"not": "a tool"}'),
        text(0, "t"),
        delta(0, {"type": "citations_delta", "citation": {"type": "char_location", "cited_text": "c"}}),
        block_stop(0),
        block_start(1, {"type": "tool_use", "id": "toolu_w", "name": "calc", "input": {}}),
        text(1, "text in a tool block"),
        fragment(1, '{"ok": true}'),
        block_stop(1),
        end("tool_use"),
    ),
    "server_tool_use_is_not_a_tool_call": Case.of(
        start(),
        block_start(0, {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}),
        fragment(0, '{"query": "x"}'),
        block_stop(0),
        text_block(1, "found"),
        end(),
    ),
    "unknown_event_types_are_ignored": Case.of(
        start(), sse("future_event", {"type": "future_event", "x": 1}), text_block(0, "x"), end()
    ),
    "events_after_message_stop": Case.of(start(), text_block(0, "x"), end(), end("max_tokens", output=99)),
    "second_message_start_is_ignored": Case.of(start(), start(input_tokens=999), text_block(0, "x"), end()),
    "deltas_before_message_start_are_dropped": Case.of(text(0, "early"), start(), text_block(0, "x"), end()),
    "rate_limited_before_the_body": Case(
        (json.dumps({"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}}).encode(),),
        status=429,
        headers=(("retry-after", "0.25"),),
    ),
    "overloaded_before_the_body": Case(
        (json.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}).encode(),),
        status=529,
    ),
}


# --- a server that writes the recorded bytes as they are ----------------------------------------------


class RecordedServer(recorded_sse.RecordedServer):
    """Answers POST /v1/messages with the case named by the request's `model`."""

    def __init__(self) -> None:
        super().__init__("/v1/messages", CASES, "request-id", REQUEST_ID)

    @property
    def base_url(self) -> str:
        return self.origin


@pytest.fixture
async def server() -> AsyncIterator[RecordedServer]:
    recorded = RecordedServer()
    await recorded.start()
    yield recorded
    await recorded.stop()


# --- the two paths -----------------------------------------------------------------------------------


def comparable(outcome: Outcome) -> Outcome:
    """Text that arrived in one read is one chunk on the fast path (`append_text`): compare the text
    runs, not how they were split."""
    return list(text_runs(outcome[0])), outcome[1]


async def fast_path(base_url: str, case_name: str, shared: AnthropicProvider | None = None) -> Outcome:
    """`shared`: a provider to reuse (a new client costs ~50 ms, mostly loading CA certificates)."""
    provider = shared or AnthropicProvider(KEY, base_url)
    return await fast_path_outcome(provider, case_name, close=shared is None)


async def sdk_path(base_url: str, case_name: str, shared: anthropic.AsyncAnthropic | None = None) -> Outcome:
    """The provider's `stream` as it was before the fast path: the SDK's `messages.stream` helper."""
    client = shared or anthropic.AsyncAnthropic(api_key=KEY, base_url=base_url, max_retries=0)
    chunks: list[ProviderChunk] = []
    started = finished = False
    stop_reason, usage = "end_turn", UsageChunk()
    try:
        async with client.messages.stream(**build_params(case_request(case_name))) as events:
            started = True
            async for event in events:
                if event.type == "text" and event.text:
                    chunks.append(TextChunk(event.text))
                elif event.type == "content_block_stop" and event.content_block.type == "tool_use":
                    block = event.content_block
                    if isinstance(block.input, dict):
                        chunks.append(ToolCallChunk(block.id, block.name, block.input))
                    else:
                        raw = json.dumps(block.input, default=str)
                        chunks.append(ToolCallChunk(block.id, block.name, None, raw_arguments=raw))
                elif event.type == "message_stop":
                    finished = True
                    stop_reason = event.message.stop_reason or "end_turn"
                    u = event.message.usage
                    usage = UsageChunk(
                        u.input_tokens or 0,
                        u.output_tokens or 0,
                        u.cache_read_input_tokens or 0,
                        u.cache_creation_input_tokens or 0,
                    )
    except Exception as exc:
        error = _map_exception(exc, started, case_name)
        if error is None:
            raise
        error.message = _scrub(error.message, [KEY])
        return chunks, error_fields(error)
    finally:
        if shared is None:
            await client.close()
    if not finished:
        return chunks, error_fields(ProviderError(_CUT_OFF, retryable=True))
    return [*chunks, usage, StopChunk(stop_reason)], None


# --- tests -------------------------------------------------------------------------------------------


async def test_fast_path_matches_the_sdk_path(server: RecordedServer) -> None:
    # One test over every recorded stream (one server): a mismatch names its case.
    mismatches = {}
    provider = AnthropicProvider(KEY, server.base_url)
    client = anthropic.AsyncAnthropic(api_key=KEY, base_url=server.base_url, max_retries=0)
    try:
        for case_name in CASES:
            expected = comparable(await sdk_path(server.base_url, case_name, client))
            got = comparable(await fast_path(server.base_url, case_name, provider))
            if got != expected:
                mismatches[case_name] = {"fast": got, "sdk": expected}
    finally:
        await provider.aclose()
        await client.close()
    assert mismatches == {}


async def test_cases_cover_what_they_claim(server: RecordedServer) -> None:
    # Guards the parity test against cases that silently test nothing.
    chunks, error = await fast_path(server.base_url, "text_and_tools")
    assert error is None
    assert [c for c in chunks if isinstance(c, ToolCallChunk)] == [
        ToolCallChunk("toolu_a", "get_time", {"tz": "UTC"}),
        ToolCallChunk("toolu_b", "calc", {"expression": "2+2", "note": "ää"}),
        ToolCallChunk("toolu_c", "nested", {"a": [1, {"b": None}], "c": 1500.0, "d": True}),
    ]
    chunks, error = await fast_path(server.base_url, "unicode_split_across_chunks")
    assert "".join(c.text for c in chunks if isinstance(c, TextChunk)) == UNICODE.replace(" ", "")
    chunks, _ = await fast_path(server.base_url, "usage_overridden_by_message_delta")
    assert UsageChunk(125, 40, 4100, 700) in chunks
    assert (await fast_path(server.base_url, "tool_arguments_not_an_object"))[0][0] == ToolCallChunk(
        "toolu_l", "calc", None, raw_arguments='[1, 2, "x"]'
    )
    _, error = await fast_path(server.base_url, "error_event_overloaded")
    assert error == (
        "Anthropic reported overloaded_error mid-stream: Overloaded",
        True,
        None,
        529,
        {"type": "overloaded_error", "request_id": REQUEST_ID},
    )
    _, error = await fast_path(server.base_url, "error_event_echoes_the_key")
    assert error is not None and KEY not in error[0]
    _, error = await fast_path(server.base_url, "malformed_frame")
    assert error is not None and error[:2] == ("Anthropic sent a malformed response (JSONDecodeError)", True)


@pytest.mark.parametrize("size", [1, 3, 64, 10_000])
def test_decoder_does_not_depend_on_chunk_boundaries(size: int) -> None:
    bodies = {name: case.body for name, case in CASES.items() if case.status == 200}
    # Text of one read is one chunk, so the split changes how text is cut, never what it is.
    differ = [
        name for name, body in bodies.items() if runs(decode(split_bytes(body, size))) != runs(decode([body]))
    ]
    assert differ == []


def runs(decoded: tuple[Any, ...]) -> tuple[Any, ...]:
    return (text_runs(decoded[0]), *decoded[1:])


def decode(pieces: list[bytes]) -> tuple[Any, ...]:
    decoder = AnthropicStreamDecoder()
    chunks: list[ProviderChunk] = []
    try:
        for piece in pieces:
            for chunk in decoder.feed(piece):
                chunks.append(chunk)
    except StreamErrorEvent as exc:
        return chunks, "event", exc.error_type, exc.detail
    except (ValueError, RuntimeError) as exc:
        return chunks, type(exc).__name__
    return chunks, decoder.finished, decoder.usage, decoder.stop_reason


@pytest.mark.parametrize(
    "frames",
    [
        [block_stop(0)],  # the SDK helper fails with an AttributeError on these
        end(),
        [start(), text(5, "no such block")],
        [start(), sse("content_block_delta", {"type": "content_block_delta", "index": 0})],
        [start(), sse("content_block_delta", "[1, 2]")],
    ],
)
def test_out_of_order_or_misshapen_events_are_malformed(frames: list[bytes]) -> None:
    decoder = AnthropicStreamDecoder()
    with pytest.raises((RuntimeError, ValueError)):
        list(decoder.feed(b"".join(frames)))
