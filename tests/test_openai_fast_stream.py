"""The fast OpenAI SSE path yields exactly what the SDK's own stream parser path yielded.

Each case is a recorded SSE body, served as written (chunk boundaries included) by a tiny aiohttp server
on 127.0.0.1. The same bytes go through `OpenAIProvider.stream` (our decoder) and through a reference
that drives the SDK's `chat.completions.create(stream=True)` and accumulates its chunk objects as the
provider did before the fast path; both must give the same chunks and the same ProviderError.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from core.providers.base import (
    ProviderChunk,
    ProviderError,
    StopChunk,
    TextChunk,
    ToolCallChunk,
    UsageChunk,
)
from core.providers.openai import OpenAIProvider, _is_transport_error, _map_exception, _usage
from core.providers.openai_stream import OpenAIStreamDecoder, StreamErrorFrame, _PartialCall, _tool_call
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

KEY = "sk-test-SECRET-1234567890"
REQUEST_ID = "req_fixed0123456789"


# --- recorded streams --------------------------------------------------------------------------------

BASE = {
    "id": "chatcmpl-01",
    "object": "chat.completion.chunk",
    "created": 1700000000,
    "model": "gpt-test",
    "system_fingerprint": None,
}
_ABSENT = object()


def frame(data: Any, *, crlf: bool = False) -> bytes:
    body = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    text = f"data: {body}\n\n"
    return (text.replace("\n", "\r\n") if crlf else text).encode()


def chunk(delta: Any = None, finish: Any = None, *, usage: Any = None, choices: Any = _ABSENT) -> bytes:
    if choices is _ABSENT:
        delta = {} if delta is None else delta
        choices = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    return frame({**BASE, "choices": choices, "usage": usage})


def role() -> bytes:
    return chunk({"role": "assistant", "content": "", "refusal": None})


def text(*pieces: str) -> list[bytes]:
    return [chunk({"content": p}) for p in pieces]


def tool(index: int | None, call_id: str | None, name: str, *fragments: str) -> list[bytes]:
    """A tool call as OpenAI streams it: a head with id and name, then argument fragments."""
    head: dict[str, Any] = {"type": "function", "function": {"name": name, "arguments": ""}}
    if index is not None:
        head["index"] = index
    if call_id is not None:
        head["id"] = call_id
    rest = [
        {"function": {"arguments": f}} | ({"index": index} if index is not None else {}) for f in fragments
    ]
    return [chunk({"tool_calls": [head]}), *(chunk({"tool_calls": [r]}) for r in rest)]


def usage(
    prompt: int = 10, completion: int = 5, cached: Any = 0, written: Any = 0, **extra: Any
) -> dict[str, Any]:
    details: dict[str, Any] = {"cached_tokens": cached, "audio_tokens": 0}
    if written is not None:
        details["cache_write_tokens"] = written
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": details,
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        **extra,
    }


DONE = b"data: [DONE]\n\n"


def end(reason: Any = "stop", used: Any = _ABSENT) -> list[bytes]:
    tail = [chunk({}, reason)]
    if used is not None:
        tail.append(chunk(choices=[], usage=usage() if used is _ABSENT else used))
    return [*tail, DONE]


def error_frame(message: Any = "The server had an error", **fields: Any) -> bytes:
    error = {"message": message, "type": "server_error", "param": None, "code": None} | fields
    return frame({"error": error})


def split_after_cr(data: bytes) -> list[bytes]:
    """`data` in two pieces, the first ending in its first CR (so a CRLF straddles a chunk boundary)."""
    cut = data.index(b"\r") + 1
    return [data[:cut], data[cut:]]


def one_chunk(*parts: bytes | list[bytes]) -> Case:
    return Case((b"".join(Case.of(*parts).chunks),))


def http_error(status: int, message: str, code: str | None = None, **headers: str) -> Case:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    return Case((json.dumps(body).encode(),), status=status, headers=tuple(headers.items()))


UNICODE = "Grüße 👋🏽 — 日本語のテキスト, ça va? 🇫🇷 \u2028 line sep"
CASES: dict[str, Case] = {
    "text_only": Case.of(role(), text("Hello", " world", ", how", " are you?"), end()),
    "text_and_tools": Case.of(
        role(),
        text("Checking", " both."),
        tool(0, "call_a", "get_time", '{"tz"', ': "UT', 'C"}'),
        tool(1, "call_b", "calc", '{"expression": "2', '+2", "note": "ä\\u00e4"', "}"),
        tool(2, "call_c", "nested", '{"a": [1, {"b": null}], ', '"c": 1.5e3, "d": tr', "ue}"),
        end("tool_calls"),
    ),
    "two_fragments_in_one_delta": Case.of(
        role(),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_p",
                        "type": "function",
                        "function": {"name": "a", "arguments": "{}"},
                    },
                    {
                        "index": 1,
                        "id": "call_q",
                        "type": "function",
                        "function": {"name": "b", "arguments": '{"x'},
                    },
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": '": 1}'}}]}),
        end("tool_calls"),
    ),
    "tools_out_of_order_indexes": Case.of(
        tool(3, "call_3", "late", "{}"), tool(1, "call_1", "early", "{}"), end("tool_calls")
    ),
    "tools_without_index_or_id": Case.of(  # Ollama-style: each call whole, no index, no id
        chunk({"tool_calls": [{"function": {"name": "get_time", "arguments": '{"tz": "UTC"}'}}]}),
        chunk({"tool_calls": [{"type": "function", "function": {"name": "calc", "arguments": "{}"}}]}),
        end("tool_calls"),
    ),
    "tool_id_only_on_a_later_fragment": Case.of(
        chunk({"tool_calls": [{"index": 0, "function": {"name": "calc", "arguments": '{"a"'}}]}),
        chunk({"tool_calls": [{"index": 0, "id": "call_late", "function": {"arguments": ": 2}"}}]}),
        end("tool_calls"),
    ),
    "tool_name_in_fragments_keeps_the_first": Case.of(
        chunk({"tool_calls": [{"index": 0, "id": "call_n", "function": {"name": "calc"}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"name": "other", "arguments": "{}"}}]}),
        chunk({"tool_calls": [{"index": 0, "function": None}]}),
        end("tool_calls"),
    ),
    "tool_without_arguments": Case.of(tool(0, "call_x", "get_time"), end("tool_calls")),
    "tool_arguments_whitespace": Case.of(tool(0, "call_w", "get_time", "  ", "\n"), end("tool_calls")),
    "tool_arguments_invalid": Case.of(
        text("ok"), tool(0, "call_i", "calc", '{"expression": "1+'), end("tool_calls")
    ),
    "tool_arguments_not_an_object": Case.of(tool(0, "call_l", "calc", "[1, ", '2, "x"]'), end("tool_calls")),
    "tool_arguments_nan": Case.of(tool(0, "call_nan", "calc", '{"x": NaN}'), end("tool_calls")),
    "stop_with_tool_calls_means_tool_use": Case.of(tool(0, "call_s", "calc", "{}"), end("stop")),
    **{
        f"stop_{reason}": Case.of(text("stopping"), end(reason))
        for reason in ("stop", "length", "tool_calls", "function_call", "content_filter", "eos")
    },
    "length_with_tool_calls": Case.of(tool(0, "call_len", "calc", '{"x": '), end("length")),
    "refusal": Case.of(
        role(), chunk({"refusal": "I can't"}), chunk({"refusal": " help with that.", "content": None}), end()
    ),
    "content_and_refusal_in_one_delta": Case.of(chunk({"content": "a", "refusal": "b"}), end()),
    "usage_with_cache_tokens": Case.of(text("ok"), end(used=usage(4820, 33, cached=4000, written=700))),
    "usage_without_details": Case.of(
        text("ok"), end(used={"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15})
    ),
    "usage_details_null": Case.of(
        text("ok"), end(used={"prompt_tokens": 12, "completion_tokens": 3, "prompt_tokens_details": None})
    ),
    "usage_cached_null_write_absent": Case.of(text("ok"), end(used=usage(50, 2, cached=None, written=None))),
    "usage_more_cached_than_prompt": Case.of(text("ok"), end(used=usage(10, 2, cached=30, written=5))),
    "usage_empty_object": Case.of(text("ok"), end(used={})),
    "usage_details_as_strings_are_coerced": Case.of(
        text("ok"),
        end(
            used={
                "prompt_tokens": 40,
                "completion_tokens": 3,
                "prompt_tokens_details": {"cached_tokens": "8"},
            }
        ),
    ),
    "usage_on_the_finish_chunk": Case.of(text("ok"), chunk({}, "stop", usage=usage(20, 4, cached=6)), DONE),
    "usage_twice_last_wins": Case.of(
        text("ok"), chunk({"content": "!"}, usage=usage(1, 1)), end(used=usage(99, 7, cached=9))
    ),
    "no_usage_ever": Case.of(text("ok"), end(used=None)),
    "no_done_after_finish": Case.of(text("ok"), end()[:-1]),
    "cut_after_finish_abort": Case.of(text("ok"), end()[:1], abort=True),
    "cut_clean_before_finish": Case.of(role(), text("one", " two")),
    "cut_abort_before_finish": Case.of(role(), text("one", " two"), abort=True),
    "cut_inside_a_frame": Case.of(text("one"), b'data: {"choices": [{"delta": {"cont'),
    "cut_before_final_blank_line": Case.of(text("one"), chunk({}, "stop")[:-1]),
    "cut_after_tool_head": Case.of(tool(0, "call_cut", "calc", '{"a": 1'), abort=True),
    "empty_body": Case.of(),
    "done_only": Case.of(DONE),
    "done_then_garbage": Case.of(text("ok"), end(), b"data: {not json}\n\n", text("after")),
    "done_in_one_chunk_with_text": one_chunk(text("a", "b"), end(), text("never")),
    "done_with_suffix": Case.of(text("ok"), chunk({}, "stop"), b"data: [DONE] trailing\n\n", text("no")),
    "error_frame": Case.of(role(), text("partial"), error_frame("The server had an error")),
    "error_frame_with_code": Case.of(
        text("x"), error_frame("Overloaded", code="overloaded", type="server_busy")
    ),
    "error_frame_numeric_code": Case.of(text("x"), error_frame("Bad", code=500, type=None)),
    "error_frame_without_message": Case.of(text("x"), frame({"error": {"type": "server_error"}})),
    "error_frame_message_not_a_string": Case.of(text("x"), frame({"error": {"message": 42}})),
    "error_frame_is_a_string": Case.of(text("x"), frame({"error": "  upstream went away  "})),
    "error_frame_echoes_the_key": Case.of(error_frame(f"bad key {KEY}")),
    "error_frame_with_event_name": Case.of(text("x"), b"event: error\n", error_frame("named")),
    "error_null_is_not_an_error": Case.of(text("x"), frame({**BASE, "choices": [], "error": None}), end()),
    "error_empty_is_not_an_error": Case.of(text("x"), frame({**BASE, "choices": [], "error": {}}), end()),
    "error_frame_in_one_chunk_with_text": one_chunk(text("a", "b"), error_frame("boom")),
    "malformed_frame": Case.of(text("a"), b'data: {"choices": \n\n'),
    "malformed_frame_in_one_chunk_with_text": one_chunk(text("a", "b"), b"data: {oops}\n\n", end()),
    "nan_frame_json_accepts": Case.of(
        text("a"),
        b'data: {"choices": [{"delta": {"content": "b"}, "finish_reason": null}], "x": NaN}\n\n',
        end(),
    ),
    "huge_integer_json_accepts": Case.of(
        b'data: {"choices": [{"delta": {"content": "big"}}], "n": 123456789012345678901234567890}\n\n', end()
    ),
    "lone_surrogate_json_accepts": Case.of(
        b'data: {"choices": [{"delta": {"content": "\\ud800x"}}]}\n\n', end()
    ),
    "invalid_utf8_frame": Case.of(text("a"), b'data: {"t": "\xff"}\n\n'),
    "invalid_utf8_in_a_comment": Case.of(text("a"), b": ke\xffp-alive\n", text("b"), end()),
    "invalid_utf8_in_done": Case.of(text("a"), chunk({}, "stop"), b"data: [DONE]\xff\n\n"),
    "invalid_utf8_in_an_unfinished_event": Case.of(text("a"), chunk({}, "stop"), b"data: \xff\n"),
    "invalid_utf8_in_a_last_line_without_end": Case.of(text("a"), chunk({}, "stop"), b"data: x\xff"),
    "empty_data_frame": Case.of(text("a"), b"data:\n\n", end()),
    "data_without_colon": Case.of(text("a"), b"data\n\n", end()),
    "ping_event_without_data": Case.of(text("a"), b"event: ping\n\n", end()),
    "retry_without_data": Case.of(text("a"), b"retry: 1000\n\n", end()),
    "invalid_retry_is_ignored": Case.of(text("a"), b"retry: soon\n\n", end()),
    "id_then_extra_blank_lines": Case.of(text("a"), b"id: 7\n", text("b"), b"\n", end()),
    "id_with_nul_is_ignored": Case.of(text("a"), b"id: 7\x00\n", text("b"), b"\n", end()),
    "thread_event_malformed": Case.of(text("a"), b"event: thread.run\ndata: {bad\n\n"),
    "other_event_names_are_ignored": Case.of(b"event: completion\n", *text("a"), end()),
    "empty_deltas": Case.of(
        role(),
        chunk({}),
        text("", "a", "", "b"),
        chunk({"content": None}),
        chunk({"tool_calls": []}),
        chunk({"tool_calls": None}),
        tool(0, "call_e", "calc", "", "", '{"x": 1}', ""),
        chunk(choices=[]),
        end("tool_calls"),
    ),
    "several_choices": Case.of(
        chunk(
            choices=[{"index": 0, "delta": {"content": "zero"}}, {"index": 1, "delta": {"content": "one"}}]
        ),
        chunk(
            choices=[
                {"index": 0, "delta": {}, "finish_reason": "stop"},
                {"index": 1, "delta": {}, "finish_reason": "length"},
            ]
        ),
        DONE,
    ),
    "finish_reason_on_a_later_choice_only": Case.of(
        text("a"), chunk(choices=[{"index": 0, "delta": {}, "finish_reason": ""}]), end("length")
    ),
    "non_string_content_passes_through": Case.of(chunk({"content": 5}), chunk({"content": True}), end()),
    "unicode_split_across_chunks": Case(
        tuple(split_bytes(b"".join(Case.of(text(*re.split("(?<= )", UNICODE)), end()).chunks), 7))
    ),
    "unicode_one_byte_chunks": Case(
        tuple(split_bytes(b"".join(Case.of(text(UNICODE[:9], UNICODE[9:]), end()).chunks), 1))
    ),
    "whole_body_in_one_chunk": one_chunk(
        role(), text("a", "b"), tool(0, "call_1", "calc", "{}"), end("tool_calls")
    ),
    "crlf_line_endings": Case.of([c.replace(b"\n", b"\r\n") for c in [*text("crlf", " text"), *end()]]),
    "crlf_split_between_cr_and_lf": Case(
        tuple(p for c in [*text("a", "b"), *end()] for p in split_after_cr(c.replace(b"\n", b"\r\n")))
    ),
    "bare_cr_line_endings": Case.of([c.replace(b"\n", b"\r") for c in [*text("cr"), *end()]]),
    "comments_and_multiline_data": Case.of(
        b": keep-alive\n\n",
        b": OPENROUTER PROCESSING\n\n",
        b'data: {"choices": [{"index": 0,\ndata: "delta": {"content": "multi"}}]}\n\n',
        b'data:{"choices": [{"delta": {"content": " line"}}]}\n\n',
        b"foo: unknown field\n",
        end(),
    ),
    "rate_limited_before_the_body": http_error(429, "Rate limit reached", **{"retry-after": "0.25"}),
    "quota_before_the_body": http_error(429, "You exceeded your current quota", "insufficient_quota"),
    "server_error_before_the_body": http_error(500, "Internal server error"),
    "bad_request_before_the_body": http_error(400, "messages: too long"),
    "bad_key_before_the_body": http_error(401, f"Incorrect API key provided: {KEY}"),
    "unknown_model_before_the_body": http_error(404, "The model does not exist"),
}

# Frames of the wrong shape on which the SDK path leaked a raw AttributeError/TypeError out of the
# provider (a Provider must only raise ProviderError): the fast path reports a malformed response.
WRONG_SHAPES: dict[str, Case] = {
    "frame_is_a_list": Case.of(text("a"), frame([1, 2]), end()),
    "frame_is_null": Case.of(text("a"), b"data: null\n\n", end()),
    "choice_is_a_string": Case.of(text("a"), chunk(choices=["x"]), end()),
    "delta_is_a_string": Case.of(text("a"), chunk(choices=[{"delta": "x"}]), end()),
    "fragment_is_a_string": Case.of(text("a"), chunk({"tool_calls": ["x"]}), end()),
    "usage_is_a_number": Case.of(text("a"), chunk({}, "stop", usage=7), DONE),
}
# Parts a compatible server may leave null or out, on which the SDK path failed: now simply skipped.
LENIENT: dict[str, tuple[Case, list[ProviderChunk]]] = {
    "choices_null": (
        Case.of(text("a"), frame({**BASE, "choices": None, "usage": usage(8, 2)}), end(used=None)),
        [TextChunk("a"), UsageChunk(8, 2), StopChunk("end_turn")],
    ),
    "choices_absent": (
        Case.of(text("a"), frame({"usage": usage(8, 2)}), end(used=None)),
        [TextChunk("a"), UsageChunk(8, 2), StopChunk("end_turn")],
    ),
    "delta_absent": (  # as a final chunk of some servers
        Case.of(
            b'data: {"choices":[{"delta":{"content":"min"}}]}\n\n',
            b'data: {"choices":[{"finish_reason":"stop"}]}\n\n',
        ),
        [TextChunk("min"), StopChunk("end_turn")],
    ),
    "thread_events_are_ignored": (  # Assistants events: never checked for errors, no choices
        Case.of(
            text("a"), b"event: thread.message.delta\n", frame({"error": {"message": "not checked"}}), end()
        ),
        [TextChunk("a"), UsageChunk(10, 5), StopChunk("end_turn")],
    ),
    "delta_null": (
        Case.of(text("a"), chunk(choices=[{"index": 0, "delta": None, "finish_reason": "stop"}]), DONE),
        [TextChunk("a"), StopChunk("end_turn")],
    ),
}
ALL_CASES = {**CASES, **WRONG_SHAPES, **{name: case for name, (case, _) in LENIENT.items()}}


# --- a server that writes the recorded bytes as they are ----------------------------------------------


class RecordedServer(recorded_sse.RecordedServer):
    """Answers POST /v1/chat/completions with the case named by the request's `model`."""

    def __init__(self) -> None:
        super().__init__("/v1/chat/completions", ALL_CASES, "x-request-id", REQUEST_ID)

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    @property
    def label(self) -> str:
        return f"the OpenAI-compatible server at 127.0.0.1:{self.port}"


@pytest.fixture
async def server() -> AsyncIterator[RecordedServer]:
    recorded = RecordedServer()
    await recorded.start()
    yield recorded
    await recorded.stop()


# --- the two paths -----------------------------------------------------------------------------------

_GENERATED_ID = re.compile(r"call_[0-9a-f]{24}")


def comparable(outcome: Outcome) -> Outcome:
    """Minted ids are random: compare them as a placeholder. Text that arrived in one read is one chunk
    on the fast path (`append_text`): compare the text runs, not how they were split."""
    chunks = [
        replace(c, id="<minted>") if isinstance(c, ToolCallChunk) and _GENERATED_ID.fullmatch(c.id) else c
        for c in text_runs(outcome[0])
    ]
    error = outcome[1]
    if error is not None:  # the request id is fixed by the server, but compare it without relying on that
        error = (
            *error[:4],
            {k: v for k, v in error[4].items() if k != "request_id"} | {"rid": "request_id" in error[4]},
        )
    return chunks, error


async def fast_path(base_url: str, case_name: str, shared: OpenAIProvider | None = None) -> Outcome:
    """`shared`: a provider to reuse (a new client costs ~50 ms, mostly loading CA certificates)."""
    return await fast_path_outcome(shared or OpenAIProvider(KEY, base_url), case_name, close=shared is None)


async def sdk_path(
    base_url: str, label: str, case_name: str, shared: openai.AsyncOpenAI | None = None
) -> Outcome:
    """The provider's `stream` as it was before the fast path: the SDK's AsyncStream of chunk models,
    accumulated by the old `_StreamState` logic (copied here, since the provider no longer has it)."""
    client = shared or openai.AsyncOpenAI(api_key=KEY, base_url=base_url, max_retries=0)
    chunks: list[ProviderChunk] = []
    started = False
    finish_reason: Any = None
    used: Any = None
    calls: dict[Any, _PartialCall] = {}

    def feed(item: ChatCompletionChunk) -> None:
        nonlocal used, finish_reason
        if item.usage is not None:
            used = item.usage
        for choice in item.choices:
            delta = choice.delta
            chunks.extend(TextChunk(t) for t in (delta.content, delta.refusal) if t)
            for fragment in delta.tool_calls or ():
                index = fragment.index if isinstance(fragment.index, int) else len(calls)
                call = calls.setdefault(index, _PartialCall())
                call.id = call.id or fragment.id or ""
                if fragment.function is not None:
                    call.name = call.name or fragment.function.name or ""
                    if fragment.function.arguments:
                        call.arguments.append(fragment.function.arguments)
            if choice.finish_reason:
                finish_reason = choice.finish_reason

    try:
        try:
            stream = await client.chat.completions.create(
                model=case_name,
                messages=[{"role": "system", "content": "You are terse."}, {"role": "user", "content": "hi"}],
                stream=True,
                stream_options={"include_usage": True},
                max_tokens=256,
            )
            started = True
            async with stream:
                async for item in stream:
                    feed(item)
        except Exception as exc:
            if not (finish_reason and _is_transport_error(exc)):
                error = _map_exception(exc, started, case_name, label)
                if error is None:
                    raise
                error.message = error.message.replace(KEY, "***")
                return chunks, error_fields(error)
        if finish_reason is None:
            return chunks, error_fields(
                ProviderError(f"the response stream from {label} was cut off", retryable=True)
            )
        # The old provider's `tool_calls()`, `_usage` and `stop_reason()` (`_tool_call` moved unchanged).
        chunks.extend(_tool_call(calls[i]) for i in sorted(calls))
        if used is not None:
            chunks.append(_usage(used))
        reason = finish_reason or "end_turn"
        old_reasons = {
            "tool_calls": "tool_use",
            "function_call": "tool_use",
            "stop": "end_turn",
            "length": "max_tokens",
        }
        chunks.append(
            StopChunk("tool_use" if calls and reason == "stop" else old_reasons.get(reason, reason))
        )
        return chunks, None
    finally:
        if shared is None:
            await client.close()


# --- tests -------------------------------------------------------------------------------------------


async def test_fast_path_matches_the_sdk_path(server: RecordedServer) -> None:
    # One test over every recorded stream (one server): a mismatch names its case.
    mismatches = {}
    provider = OpenAIProvider(KEY, server.base_url)
    client = openai.AsyncOpenAI(api_key=KEY, base_url=server.base_url, max_retries=0)
    try:
        for case_name in CASES:
            expected = comparable(await sdk_path(server.base_url, server.label, case_name, client))
            got = comparable(await fast_path(server.base_url, case_name, provider))
            if got != expected:
                mismatches[case_name] = {"fast": got, "sdk": expected}
    finally:
        await provider.aclose()
        await client.close()
    assert mismatches == {}


@pytest.mark.parametrize("case_name", list(WRONG_SHAPES))
async def test_wrong_shapes_are_a_malformed_response_not_a_raw_exception(
    server: RecordedServer, case_name: str
) -> None:
    with pytest.raises((AttributeError, TypeError)):
        await sdk_path(server.base_url, server.label, case_name)
    chunks, error = await fast_path(server.base_url, case_name)
    assert chunks == [TextChunk("a")]
    assert error == (f"{server.label} sent a malformed response (RuntimeError)", True, None, None, {})


@pytest.mark.parametrize("case_name", list(LENIENT))
async def test_null_or_missing_parts_are_skipped(server: RecordedServer, case_name: str) -> None:
    with pytest.raises((AttributeError, TypeError)):
        await sdk_path(server.base_url, server.label, case_name)
    assert await fast_path(server.base_url, case_name) == (LENIENT[case_name][1], None)


async def test_cases_cover_what_they_claim(server: RecordedServer) -> None:
    # Guards the parity test against cases that silently test nothing.
    chunks, error = await fast_path(server.base_url, "text_and_tools")
    assert error is None
    assert [c for c in chunks if isinstance(c, ToolCallChunk)] == [
        ToolCallChunk("call_a", "get_time", {"tz": "UTC"}),
        ToolCallChunk("call_b", "calc", {"expression": "2+2", "note": "ää"}),
        ToolCallChunk("call_c", "nested", {"a": [1, {"b": None}], "c": 1500.0, "d": True}),
    ]
    assert chunks[-2:] == [UsageChunk(10, 5), StopChunk("tool_use")]
    chunks, _ = await fast_path(server.base_url, "usage_with_cache_tokens")
    assert chunks[-2] == UsageChunk(
        input_tokens=120, output_tokens=33, cache_read_tokens=4000, cache_write_tokens=700
    )
    chunks, _ = await fast_path(server.base_url, "unicode_split_across_chunks")
    assert "".join(c.text for c in chunks if isinstance(c, TextChunk)) == UNICODE
    chunks, error = await fast_path(server.base_url, "error_frame")
    assert chunks == [TextChunk("partial")]
    assert error is not None and error[:2] == (
        f"{server.label} reported an error mid-stream: The server had an error",
        True,
    )
    _, error = await fast_path(server.base_url, "error_frame_echoes_the_key")
    assert error is not None and KEY not in error[0] and "***" in error[0]
    _, error = await fast_path(server.base_url, "cut_abort_before_finish")
    assert error == (f"the response stream from {server.label} was cut off", True, None, None, {})
    _, error = await fast_path(server.base_url, "rate_limited_before_the_body")
    assert error is not None and (error[2], error[3]) == (0.25, 429)
    chunks, error = await fast_path(server.base_url, "tools_without_index_or_id")
    assert error is None and [(c.name, c.input) for c in chunks if isinstance(c, ToolCallChunk)] == [
        ("get_time", {"tz": "UTC"}),
        ("calc", {}),
    ]


async def test_connection_is_reused_after_done(server: RecordedServer) -> None:
    # The SDK drains the body after [DONE] so HTTP/1.1 keeps the connection; the fast path must too.
    provider = OpenAIProvider(KEY, server.base_url)
    try:
        for _ in range(3):
            assert [c async for c in provider.stream(case_request("text_only"))][-1] == StopChunk("end_turn")
    finally:
        await provider.aclose()
    assert len(server.peers) == 3
    assert len(set(server.peers)) == 1


# --- the decoder on its own --------------------------------------------------------------------------


def test_decoder_returns_text_of_frames_before_an_error_frame() -> None:
    decoder = OpenAIStreamDecoder()
    body = b"".join([*text("a", "b"), error_frame("boom", code="x"), *text("c")])
    assert decoder.feed(body) == [TextChunk("ab")]  # one read: its text is one chunk
    assert isinstance(decoder.failure, StreamErrorFrame)
    assert (decoder.failure.message, decoder.failure.body["code"]) == ("boom", "x")


def test_decoder_stops_at_done() -> None:
    decoder = OpenAIStreamDecoder()
    assert decoder.feed(b"".join([*text("a"), *end(), *text("after")])) == [TextChunk("a")]
    assert decoder.done
    assert (decoder.finish_reason, decoder.stop_reason()) == ("stop", "end_turn")
    assert decoder.usage is not None and decoder.usage["prompt_tokens"] == 10
