"""Anthropic Messages SSE body -> provider chunks, without a pydantic model per event.

The SDK's stream helper builds several model objects per token-sized event (~0.5 ms each); this decoder
reads the raw body bytes, parses each frame with orjson and keeps only the state our chunks need.
It mirrors the SDK's `SSEDecoder` + `AsyncStream.__stream__` + `accumulate_event` closely, so the
chunks and errors match what the old SDK path produced (tests/test_anthropic_fast_stream.py checks it):
- frames without an `event:` line, `ping` frames and frames with empty data are skipped;
- the frame's JSON `type` (not its SSE event name) selects the handling, as the SDK's union does;
- an event that was not terminated by a blank line when the body ends is dropped, like the SDK does;
- tool input is parsed with jiter in partial mode, exactly as the SDK does, so truncated arguments
  give the same (partial) object.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import jiter
import orjson

from core.providers.base import ProviderChunk, ToolCallChunk, UsageChunk, append_text
from core.providers.sse_lines import SSELines

# Content blocks whose `input_json_delta` fragments the SDK accumulates (and so may fail to parse).
_INPUT_BLOCKS = frozenset({"tool_use", "server_tool_use"})
_USAGE_OVERRIDES = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


class StreamErrorEvent(Exception):
    """An `event: error` frame: the fields the SDK's APIStatusError(200) would have exposed."""

    def __init__(self, error_type: Any, detail: Any) -> None:
        super().__init__(f"{error_type}: {detail}")
        self.error_type = error_type  # `error.type` from the frame, None when absent
        self.detail = detail  # `error.message` from the frame, None when absent


class AnthropicStreamDecoder:
    """Feed it the body's bytes as they arrive; it yields the chunks each piece completes.

    After the body ends, `finished` tells whether `message_stop` arrived, and `usage` / `stop_reason`
    hold the values as of that event. Raises StreamErrorEvent for an error frame, ValueError
    (JSONDecodeError, UnicodeDecodeError) for unparsable frames and RuntimeError for frames that are
    valid JSON but not a well-formed event sequence.
    """

    __slots__ = (
        "_blocks",
        "_data",
        "_event",
        "_fragments",
        "_lines",
        "_message_usage",
        "_stop_reason",
        "finished",
        "stop_reason",
        "usage",
    )

    def __init__(self) -> None:
        self._lines = SSELines()
        self._event: str | None = None
        self._data: list[bytes] = []
        self._message_usage: dict[str, Any] | None = None  # None until message_start
        self._stop_reason: Any = None
        self._blocks: list[Any] = []  # content_block dicts, by position (the SDK indexes a list too)
        self._fragments: dict[int, list[str]] = {}  # input_json_delta fragments per block position
        self.finished = False
        self.stop_reason = "end_turn"
        self.usage = UsageChunk()

    def feed(self, data: bytes) -> Iterator[ProviderChunk]:
        lines = self._lines.split(data)
        out: list[ProviderChunk] = []
        try:
            # Inlined line handling: this loop runs three times per token, so calls are avoided.
            for line in lines:
                if not line:  # a blank line ends the event
                    event, frame_data = self._event, self._data
                    if event is None and not frame_data:
                        continue
                    self._event, self._data = None, []
                    if event:  # frames without an event name are skipped, as the SDK skips them
                        self._dispatch(event, frame_data, out)
                elif line[:5] == b"data:":
                    self._data.append(line[6:] if line[5:6] == b" " else line[5:])
                elif line[:6] == b"event:":
                    self._event = (line[7:] if line[6:7] == b" " else line[6:]).decode()
                elif line == b"data":  # a field without a colon has an empty value
                    self._data.append(b"")
                elif line == b"event":
                    self._event = ""
                # Comments (":..."), `id`, `retry` and unknown fields do not matter to us.
        except Exception:
            # Chunks of the frames before the bad one still reach the consumer, as with the SDK.
            yield from out
            raise
        yield from out

    def _dispatch(self, event: str, data: list[bytes], out: list[ProviderChunk]) -> None:
        if event == "ping":
            return
        raw = data[0] if len(data) == 1 else b"\n".join(data)
        if event == "error":
            try:
                body: Any = _loads(raw)
            except ValueError:
                body = None  # not JSON: no error type or message to take from it
            raise StreamErrorEvent(_path(body, "error", "type"), _path(body, "error", "message"))
        if not raw:
            return
        frame = _loads(raw)
        if not isinstance(frame, dict):
            raise ValueError("an Anthropic stream frame is not a JSON object")
        try:
            self._handle(frame, out)
        except (KeyError, TypeError, AttributeError, IndexError) as exc:
            # Valid JSON with the wrong shape; the SDK would fail on it too, in its own way.
            raise RuntimeError(f"malformed Anthropic stream event: {frame.get('type')!r}") from exc

    def _handle(self, frame: dict[str, Any], out: list[ProviderChunk]) -> None:
        kind = frame.get("type")
        if kind == "content_block_delta":  # first: nearly every frame is one
            if self._message_usage is None:
                return  # before message_start the SDK passes it on without accumulating: no chunk
            position, block = self._block(frame["index"])
            delta = frame["delta"]
            delta_type = delta.get("type")
            if delta_type == "text_delta":
                if block.get("type") == "text" and (text := delta["text"]):
                    append_text(out, text)
            elif delta_type == "input_json_delta" and block.get("type") in _INPUT_BLOCKS:
                self._fragments.setdefault(position, []).append(delta["partial_json"])
            # thinking, signature and citation deltas carry nothing we pass on.
        elif kind == "content_block_start":
            if self._message_usage is not None:
                self._blocks.append(frame["content_block"])
        elif kind == "content_block_stop":
            self._require_start(kind)
            position, block = self._block(frame["index"])
            if block.get("type") in _INPUT_BLOCKS:
                tool_input = self._tool_input(position, block)
                if block.get("type") == "tool_use":
                    out.append(_tool_call(block, tool_input))
        elif kind == "message_start":
            if self._message_usage is None:
                message = frame["message"]
                self._message_usage = dict(message["usage"])
                self._stop_reason = message.get("stop_reason")
                self._blocks = list(message.get("content") or [])
        elif kind == "message_delta":
            if self._message_usage is not None:
                self._stop_reason = frame["delta"].get("stop_reason")
                usage = frame["usage"]
                # Cumulative totals: they overwrite; optional ones absent here keep message_start's.
                self._message_usage["output_tokens"] = usage.get("output_tokens")
                for key in _USAGE_OVERRIDES:
                    if usage.get(key) is not None:
                        self._message_usage[key] = usage[key]
        elif kind == "message_stop":
            usage = self._require_start(kind)
            self.finished = True
            self.stop_reason = self._stop_reason or "end_turn"
            self.usage = UsageChunk(
                input_tokens=usage.get("input_tokens") or 0,
                output_tokens=usage.get("output_tokens") or 0,
                cache_read_tokens=usage.get("cache_read_input_tokens") or 0,
                cache_write_tokens=usage.get("cache_creation_input_tokens") or 0,
            )
        # Any other type (a future event) is ignored, as the SDK helper ignores it.

    def _require_start(self, kind: str) -> dict[str, Any]:
        if self._message_usage is None:
            raise RuntimeError(f'Unexpected event order, got {kind} before "message_start"')
        return self._message_usage

    def _block(self, index: int) -> tuple[int, dict[str, Any]]:
        blocks = self._blocks
        if index < 0:  # the SDK indexes a Python list, so negative indexes count from the end
            index += len(blocks)
            if index < 0:
                raise IndexError(index)
        return index, blocks[index]

    def _tool_input(self, position: int, block: dict[str, Any]) -> Any:
        fragments = self._fragments.get(position)
        buffer = "".join(fragments).encode() if fragments else b""
        if not buffer:
            return block.get("input")  # no fragments: the (empty) input from content_block_start
        try:
            # Partial mode, as the SDK: arguments cut short still give the object parsed so far.
            return jiter.from_json(buffer, partial_mode=True)
        except ValueError as exc:
            raise ValueError(f"Unable to parse tool parameter JSON from model: {exc}") from exc


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        # Redo it as the SDK does (strict UTF-8, then json), so the error type and the few inputs
        # that json accepts and orjson refuses (NaN, Infinity) come out the same.
        return json.loads(raw.decode())


def _path(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _tool_call(block: dict[str, Any], tool_input: Any) -> ToolCallChunk:
    if isinstance(tool_input, dict):
        return ToolCallChunk(block["id"], block["name"], tool_input)
    raw = json.dumps(tool_input, default=str)
    return ToolCallChunk(block["id"], block["name"], None, raw_arguments=raw)
