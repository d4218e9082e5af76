"""OpenAI Chat Completions SSE body -> provider chunks, without a pydantic model per chunk.

The SDK builds a `ChatCompletionChunk` model for every token-sized frame (~0.5 ms each); this decoder
reads the raw body bytes, parses each frame with orjson and keeps only what our chunks need. It mirrors
the SDK's `SSEDecoder` + `AsyncStream.__stream__` + the old `_StreamState`, so the chunks and errors
match what the SDK path produced (tests/test_openai_fast_stream.py checks it):
- lines end at CR, LF or CRLF; an event is dispatched at a blank line if it has an event name, data,
  a retry or (ever) a last event id, as in the SDK, so `id:` / `retry:` / `event: ping` frames without
  data fail as JSON, like there;
- `data: [DONE]` ends the stream; an event not closed by a blank line when the body ends is dropped;
- every line must be UTF-8 (the SDK decodes each one strictly); data lines are only checked when
  parsed, which gives the same error at the same point;
- a frame whose JSON has a truthy `error` member is a mid-stream error (the SDK's APIError);
- `thread.*` events (Assistants) are parsed but carry nothing for Chat Completions.
Lenient where compatible servers differ: missing `index` on tool-call fragments, missing ids, refusal
deltas, usage on a chunk with `choices: []` (or none at all), no usage. Where the SDK path leaked a raw
AttributeError/TypeError (a frame of the wrong shape, `choices: null`, `delta: null`) we either skip
the empty part (`null`) or raise RuntimeError, so the provider reports a malformed response.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from core.providers.base import TextChunk, ToolCallChunk, append_text
from core.providers.sse_lines import SSELines

_DONE = b"[DONE]"
_STOP_REASONS = {
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "stop": "end_turn",
    "length": "max_tokens",
}
_SHAPE_ERRORS = (AttributeError, TypeError, KeyError)


class StreamErrorFrame(Exception):
    """A `{"error": ...}` frame: the message and body the SDK's APIError would have carried."""

    def __init__(self, message: str, body: Any) -> None:
        super().__init__(message)
        self.message = message
        self.body = body


@dataclass(slots=True)
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class OpenAIStreamDecoder:
    """Feed it the body's bytes as they arrive; it returns the text chunks each piece completes.

    Once `done` is set (`data: [DONE]`), stop feeding. When the body ends without it, call `close()`.
    Afterwards `finish_reason` tells whether the completion finished, `usage` holds the last raw usage
    object (a dict, None if the server sent none), and `tool_calls()` / `stop_reason()` the rest.
    A failed frame leaves in `failure` (from `feed`) or raises (from `close`): StreamErrorFrame for an
    error frame, ValueError (JSONDecodeError, UnicodeDecodeError) for unparsable frames and RuntimeError
    for frames that are valid JSON of the wrong shape.
    """

    __slots__ = (
        "_calls",
        "_data",
        "_event",
        "_last_id",
        "_lines",
        "_retry",
        "done",
        "failure",
        "finish_reason",
        "usage",
    )

    def __init__(self) -> None:
        self._lines = SSELines()
        self._event: str | None = None
        self._data: list[bytes] = []  # raw data lines of the current event, UTF-8 not yet checked
        self._last_id = ""  # never reset between events (SSE spec, and the SDK)
        self._retry: int | None = None
        self._calls: dict[Any, _PartialCall] = {}
        self.done = False
        self.failure: Exception | None = None
        self.finish_reason: Any = None
        self.usage: dict[str, Any] | None = None

    def feed(self, data: bytes) -> list[TextChunk]:
        """The text chunks of the frames `data` completes. If a frame fails, the chunks of the frames
        before it are returned and the error is left in `failure` (raise it after passing them on, as
        the SDK path yielded them before failing); stop feeding then."""
        lines = self._lines.split(data)
        out: list[TextChunk] = []
        try:
            # Inlined line handling: this loop runs three times per token, so calls are avoided.
            for line in lines:
                if not line:  # a blank line ends the event, if it has anything at all
                    if (
                        self._data or self._event or self._last_id or self._retry is not None
                    ) and self._dispatch(out):
                        self._lines.pending = b""  # [DONE]: the SDK reads no further
                        break
                elif line[:5] == b"data:":
                    self._data.append(line[6:] if line[5:6] == b" " else line[5:])
                else:
                    self._field(line)
        except Exception as exc:  # a list and a flag, not a generator: this runs once per token
            self.failure = exc
        return out

    def close(self) -> None:
        """The body ended without `[DONE]`. The event in progress is dropped, but its lines (and a
        last line without a line end) were decoded by the SDK, so invalid UTF-8 there still fails."""
        for raw in (*self._data, self._lines.pending):
            raw.decode()
        self._data, self._event, self._retry = [], None, None
        self._lines.pending = b""

    def _field(self, line: bytes) -> None:
        # Rare lines (comments, event names, ids, retries): handled exactly as the SDK does.
        text = line.decode()
        if text.startswith(":"):
            return
        name, _, value = text.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":  # only `data` without a colon gets here
            self._data.append(value.encode())
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry":
            with contextlib.suppress(ValueError):  # an invalid retry is ignored
                self._retry = int(value)

    def _dispatch(self, out: list[TextChunk]) -> bool:
        """Handle the finished event; True when it was `[DONE]`."""
        data, event = self._data, self._event
        self._data, self._event, self._retry = [], None, None
        raw = data[0] if len(data) == 1 else b"\n".join(data)
        if raw[:6] == _DONE:
            raw.decode()  # the SDK decoded the line before looking at it
            self.done = True
            return True
        frame = _loads(raw)
        if event and event.startswith("thread."):
            return False  # an Assistants event: the SDK does not check it for errors; no choices
        if not isinstance(frame, dict):
            raise RuntimeError("an OpenAI stream frame is not a JSON object")
        error = frame.get("error")
        if error:
            message = error.get("message") if isinstance(error, dict) else None
            if not message or not isinstance(message, str):
                message = "An error occurred during streaming"  # the SDK's words
            raise StreamErrorFrame(message, error)
        try:
            self._handle(frame, out)
        except _SHAPE_ERRORS as exc:
            raise RuntimeError("malformed OpenAI stream chunk") from exc
        return False

    def _handle(self, frame: dict[str, Any], out: list[TextChunk]) -> None:
        usage = frame.get("usage")
        if usage is not None:  # normally a last chunk with `choices == []`
            if not isinstance(usage, dict):
                raise TypeError("usage is not an object")
            self.usage = usage
        for choice in frame.get("choices") or ():
            delta = choice.get("delta")
            if delta:
                # A refusal is what the model says instead of an answer, so the user should see it.
                content = delta.get("content")
                if content:
                    append_text(out, content)
                refusal = delta.get("refusal")
                if refusal:
                    append_text(out, refusal)
                fragments = delta.get("tool_calls")
                if fragments:
                    for fragment in fragments:
                        self._add_fragment(fragment)
            reason = choice.get("finish_reason")
            if reason:
                self.finish_reason = reason

    def _add_fragment(self, fragment: dict[str, Any]) -> None:
        # Some compatible servers omit `index` and send each call whole: treat each as a new call.
        index = fragment.get("index")
        if not isinstance(index, int):
            index = len(self._calls)
        call = self._calls.get(index)
        if call is None:
            call = self._calls[index] = _PartialCall()
        call.id = call.id or fragment.get("id") or ""
        function = fragment.get("function")
        if function is not None:
            call.name = call.name or function.get("name") or ""
            arguments = function.get("arguments")
            if arguments:
                call.arguments.append(arguments)

    def tool_calls(self) -> list[ToolCallChunk]:
        return [_tool_call(self._calls[i]) for i in sorted(self._calls)]

    def stop_reason(self) -> str:
        reason = self.finish_reason or "end_turn"
        # Several compatible servers report "stop" even when the turn ends in tool calls.
        if self._calls and reason == "stop":
            return "tool_use"
        mapped: str = _STOP_REASONS.get(reason, reason)  # unknown reasons pass through as sent
        return mapped


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        # Redo it as the SDK does (strict UTF-8, then json), so the error type and the few inputs
        # that json accepts and orjson refuses (NaN, huge integers, lone surrogates) come out the same.
        return json.loads(raw.decode())


def _tool_call(call: _PartialCall) -> ToolCallChunk:
    call_id = call.id or f"call_{uuid.uuid4().hex[:24]}"  # some servers send no id at all
    raw = "".join(call.arguments)
    if not raw.strip():
        return ToolCallChunk(call_id, call.name, {})  # models send "" for tools without parameters
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        return ToolCallChunk(call_id, call.name, parsed)
    return ToolCallChunk(call_id, call.name, None, raw_arguments=raw)
