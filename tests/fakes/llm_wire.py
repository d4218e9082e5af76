"""Wire formats for the fake LLM server: SSE frames, error bodies and request validation.

Kept apart from the server so each half stays readable. The frames copy what api.anthropic.com and
api.openai.com send today (field names, ordering, the empty first `partial_json`, usage placement).
Validation covers the rules our providers could break, with the real APIs' error wording.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fakes.llm_server import Reply

Frame = tuple[bytes, bool]  # (bytes to write, is it a content frame: text delta or argument fragment)
Problem = tuple[int, str, str]  # (HTTP status, error type or code, message)

_TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_MEDIA_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}
_OPENAI_STOP = {"end_turn": "stop", "tool_use": "tool_calls", "max_tokens": "length"}


def _new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


# --- Anthropic ---------------------------------------------------------------------------------------


def _sse(event: str, data: dict[str, Any]) -> bytes:
    # The SDK ignores frames without an `event:` line, so every frame has one, as on the real API.
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def anthropic_frames(reply: Reply, model: str) -> list[Frame]:
    usage = _anthropic_usage(reply)
    message: dict[str, Any] = {
        "id": _new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": 1},
    }
    frames: list[Frame] = [(_sse("message_start", {"type": "message_start", "message": message}), False)]
    frames.append((_sse("ping", {"type": "ping"}), False))
    index = 0
    if reply.text_chunks:
        frames += _anthropic_text_block(index, reply.text_chunks)
        index += 1
    for tool in reply.tools:
        frames += _anthropic_tool_block(index, tool.id or _new_id("toolu_"), tool.name, tool.arguments)
        index += 1
    if reply.error_after is not None:
        error = {"type": "error", "error": {"type": reply.error_type, "message": reply.error_message}}
        return [*frames[: _content_position(frames, reply.error_after)], (_sse("error", error), False)]
    stop = reply.stop_reason or ("tool_use" if reply.tools else "end_turn")
    delta = {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": usage}
    frames.append((_sse("message_delta", delta), False))
    frames.append((_sse("message_stop", {"type": "message_stop"}), False))
    return frames


def _anthropic_usage(reply: Reply) -> dict[str, Any]:
    u = reply.usage
    return {
        "input_tokens": u.input,
        "cache_creation_input_tokens": u.cache_write,
        "cache_read_input_tokens": u.cache_read,
        "cache_creation": {"ephemeral_5m_input_tokens": u.cache_write, "ephemeral_1h_input_tokens": 0},
        "output_tokens": u.output,  # message_delta carries the cumulative count
        "service_tier": "standard",
    }


def _anthropic_text_block(index: int, chunks: tuple[str, ...]) -> list[Frame]:
    start = {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}
    frames: list[Frame] = [(_sse("content_block_start", start), False)]
    for chunk in chunks:
        delta = {
            "type": "content_block_delta",
            "index": index,
            "delta": {"type": "text_delta", "text": chunk},
        }
        frames.append((_sse("content_block_delta", delta), True))
    frames.append((_sse("content_block_stop", {"type": "content_block_stop", "index": index}), False))
    return frames


def _anthropic_tool_block(index: int, tool_id: str, name: str, arguments: str) -> list[Frame]:
    block = {"type": "tool_use", "id": tool_id, "name": name, "input": {}}
    start = {"type": "content_block_start", "index": index, "content_block": block}
    frames: list[Frame] = [(_sse("content_block_start", start), False)]
    for fragment in ("", *_fragments(arguments)):  # the real API opens with an empty fragment
        delta = {"type": "input_json_delta", "partial_json": fragment}
        frames.append(
            (
                _sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}),
                True,
            )
        )
    frames.append((_sse("content_block_stop", {"type": "content_block_stop", "index": index}), False))
    return frames


def _fragments(text: str, pieces: int = 3) -> list[str]:
    size = max(1, -(-len(text) // pieces))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _content_position(frames: list[Frame], count: int) -> int:
    """Index of the frame just after the `count`-th content frame."""
    seen = 0
    for position, (_, is_content) in enumerate(frames):
        if seen == count:
            return position
        seen += is_content
    return len(frames)


def anthropic_error_body(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}, "request_id": _new_id("req_")}


def check_anthropic(
    headers: Mapping[str, str], body: Any, keys: set[str] | None, unknown: set[str]
) -> Problem | None:
    key = headers.get("x-api-key") or _bearer(headers.get("authorization"))
    if not key:
        return 401, "authentication_error", "x-api-key header is required"
    if keys is not None and key not in keys:
        return 401, "authentication_error", "invalid x-api-key"
    if not headers.get("anthropic-version"):
        return 400, "invalid_request_error", "anthropic-version: header is required"
    if not isinstance(body, dict):
        return 400, "invalid_request_error", "request body must be a JSON object"
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            return 400, "invalid_request_error", f"{name}: Field required"
    if body["model"] in unknown:
        return 404, "not_found_error", f"model: {body['model']}"
    if body.get("stream") is not True:
        return 400, "invalid_request_error", "the fake server only streams (stream: true)"
    message = _anthropic_system(body) or _anthropic_tools(body) or _anthropic_messages(body["messages"])
    message = message or _anthropic_cache_marks(body)
    return (400, "invalid_request_error", message) if message else None


def _anthropic_system(body: dict[str, Any]) -> str | None:
    system = body.get("system")
    if system is None or isinstance(system, str):
        return None
    if not isinstance(system, list) or any(_text_block_problem(b) for b in system):
        return "system: must be a string or a list of non-empty text blocks"
    return None


def _anthropic_tools(body: dict[str, Any]) -> str | None:
    for i, tool in enumerate(body.get("tools") or []):
        if not isinstance(tool.get("name"), str) or not _TOOL_NAME.match(tool["name"]):
            return f"tools.{i}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            return f"tools.{i}.input_schema.type: Input should be 'object'"
    return None


def _anthropic_messages(messages: Any) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for i, message in enumerate(messages):
        problem = _anthropic_message(i, message, messages[i - 1] if i else None)
        if problem:
            return problem
        uses = [b["id"] for b in _blocks(message) if b.get("type") == "tool_use"]
        following = messages[i + 1] if i + 1 < len(messages) else None
        answered = {b.get("tool_use_id") for b in _blocks(following)} if following else set()
        missing = [u for u in uses if u not in answered]
        if missing and following is not None:
            return (
                f"messages.{i + 1}: `tool_use` ids were found without `tool_result` blocks immediately "
                f"after: {', '.join(missing)}. Each `tool_use` block must have a corresponding "
                "`tool_result` block in the next message."
            )
    return None


def _anthropic_message(i: int, message: Any, previous: Any) -> str | None:
    role = message.get("role") if isinstance(message, dict) else None
    if role not in ("user", "assistant"):
        return f"messages.{i}.role: Input should be 'user' or 'assistant'"
    content = message.get("content")
    if isinstance(content, str):
        return (
            None if content.strip() else f"messages.{i}: text content blocks must contain non-whitespace text"
        )
    if not isinstance(content, list) or not content:
        return f"messages.{i}: all messages must have non-empty content"
    known = {b.get("id") for b in _blocks(previous) if b.get("type") == "tool_use"} if previous else set()
    seen_other = False
    for j, block in enumerate(content):
        problem = _anthropic_block(role, block, known)
        if problem:
            return f"messages.{i}.content.{j}: {problem}"
        if block["type"] == "tool_result" and seen_other:
            return f"messages.{i}.content.{j}: tool_result blocks must come before any other content"
        seen_other = seen_other or block["type"] != "tool_result"
    return None


def _anthropic_block(role: str, block: Any, known_uses: set[Any]) -> str | None:
    kind = block.get("type") if isinstance(block, dict) else None
    cache = block.get("cache_control") if isinstance(block, dict) else None
    if cache is not None and cache.get("type") != "ephemeral":
        return "cache_control.type: Input should be 'ephemeral'"
    if kind == "text":
        return _text_block_problem(block)
    if kind == "image" and role == "user":
        return _image_problem(block.get("source"))
    if kind == "tool_use" and role == "assistant":
        if not isinstance(block.get("id"), str) or not _TOOL_ID.match(block["id"]):
            return "tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'"
        return (
            None
            if isinstance(block.get("input"), dict)
            else "tool_use.input: Input should be a valid dictionary"
        )
    if kind == "tool_result" and role == "user":
        if block.get("tool_use_id") not in known_uses:
            return (
                f"unexpected `tool_use_id` found in `tool_result` blocks: {block.get('tool_use_id')}. Each "
                "`tool_result` block must have a corresponding `tool_use` block in the previous message."
            )
        return (
            None if isinstance(block.get("is_error", False), bool) else "is_error: Input should be a boolean"
        )
    return f"Input tag '{kind}' is not allowed in a {role} message"


def _text_block_problem(block: Any) -> str | None:
    text = block.get("text") if isinstance(block, dict) else None
    if not isinstance(text, str) or not text.strip():
        return "text content blocks must contain non-whitespace text"
    return None


def _image_problem(source: Any) -> str | None:
    if not isinstance(source, dict):
        return "image.source: Field required"
    if source.get("type") == "base64":
        if source.get("media_type") not in _MEDIA_TYPES or not isinstance(source.get("data"), str):
            return "image.source.base64: media_type and data are required"
        return None
    if source.get("type") == "url":
        return None if isinstance(source.get("url"), str) else "image.source.url.url: Field required"
    return "image.source.type: Input should be 'base64' or 'url'"


def _anthropic_cache_marks(body: dict[str, Any]) -> str | None:
    system: list[Any] = body["system"] if isinstance(body.get("system"), list) else []
    blocks = [*system, *(body.get("tools") or []), *(b for m in body["messages"] for b in _blocks(m))]
    count = sum(1 for b in blocks if isinstance(b, dict) and b.get("cache_control"))
    return f"A maximum of 4 blocks with cache_control may be provided. Found {count}." if count > 4 else None


def _blocks(message: Any) -> list[dict[str, Any]]:
    content = message.get("content") if isinstance(message, dict) else None
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def last_user_text_anthropic(body: dict[str, Any]) -> str:
    for message in reversed(body["messages"]):
        if message.get("role") != "user":
            continue
        if isinstance(message.get("content"), str):
            return str(message["content"])
        blocks = _blocks(message)
        text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
        return text or " ".join(str(b.get("content", "")) for b in blocks if b.get("type") == "tool_result")
    return ""


# --- OpenAI ------------------------------------------------------------------------------------------


def openai_frames(reply: Reply, model: str, include_usage: bool) -> list[Frame]:
    base = {
        "id": _new_id("chatcmpl-"),
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": model,
    }
    base["system_fingerprint"] = None

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        data = {**base, "choices": [choice], **({"usage": None} if include_usage else {})}
        return f"data: {json.dumps(data)}\n\n".encode()

    frames: list[Frame] = [(chunk({"role": "assistant", "content": "", "refusal": None}), False)]
    frames += [(chunk({"content": text}), True) for text in reply.text_chunks]
    for index, tool in enumerate(reply.tools):
        function = {"name": tool.name, "arguments": ""}
        head = {"index": index, "id": tool.id or _new_id("call_"), "type": "function", "function": function}
        frames.append((chunk({"tool_calls": [head]}), False))
        for fragment in _fragments(tool.arguments):
            frames.append(
                (chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}), True)
            )
    if reply.error_after is not None:
        error = {
            "error": {"message": reply.error_message, "type": "server_error", "param": None, "code": None}
        }
        position = _content_position(frames, reply.error_after)
        return [*frames[:position], (f"data: {json.dumps(error)}\n\n".encode(), False)]
    stop = _OPENAI_STOP.get(reply.stop_reason or ("tool_use" if reply.tools else "end_turn"), "stop")
    frames.append((chunk({}, stop), False))
    if include_usage and reply.send_usage:
        usage_chunk = {**base, "choices": [], "usage": _openai_usage(reply)}
        frames.append((f"data: {json.dumps(usage_chunk)}\n\n".encode(), False))
    frames.append((b"data: [DONE]\n\n", False))
    return frames


def _openai_usage(reply: Reply) -> dict[str, Any]:
    u = reply.usage
    prompt = u.input + u.cache_read + u.cache_write  # prompt_tokens includes cached tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": u.output,
        "total_tokens": prompt + u.output,
        "prompt_tokens_details": {
            "cached_tokens": u.cache_read,
            "cache_write_tokens": u.cache_write,
            "audio_tokens": 0,
        },
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def openai_error_body(message: str, *, code: str | None, status: int) -> dict[str, Any]:
    kind = {401: "invalid_request_error", 429: "requests"}.get(status, "invalid_request_error")
    kind = "server_error" if status >= 500 else kind
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def check_openai(
    headers: Mapping[str, str], body: Any, keys: set[str] | None, unknown: set[str]
) -> Problem | None:
    key = _bearer(headers.get("authorization"))
    if not key:
        return 401, "missing_api_key", "You didn't provide an API key."
    if keys is not None and key not in keys:
        # The real message quotes a masked key; this fake quotes it whole, so leaks cannot hide.
        return 401, "invalid_api_key", f"Incorrect API key provided: {key}."
    if not isinstance(body, dict) or "model" not in body or "messages" not in body:
        return 400, "missing_required_parameter", "Missing required parameter: 'model' or 'messages'."
    if body["model"] in unknown:
        return (
            404,
            "model_not_found",
            f"The model `{body['model']}` does not exist or you do not have access to it.",
        )
    if body.get("stream") is not True:
        return 400, "invalid_value", "the fake server only streams (stream: true)"
    if "max_tokens" in body and "max_completion_tokens" in body:
        return 400, "invalid_value", "max_tokens and max_completion_tokens cannot both be set"
    message = _openai_tools(body) or _openai_messages(body["messages"])
    return (400, "invalid_value", message) if message else None


def _openai_tools(body: dict[str, Any]) -> str | None:
    if "tools" not in body:
        return None
    tools = body["tools"]
    if not isinstance(tools, list) or not tools:
        return "Invalid 'tools': empty array. Expected an array with minimum length 1."
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if tool.get("type") != "function" or not isinstance(function, dict) or not function.get("name"):
            return f"Missing required parameter: 'tools[{i}].function.name'."
    return None


def _openai_messages(messages: Any) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "Invalid 'messages': empty array."
    pending: list[str] = []  # tool_call ids still waiting for their tool message
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role == "tool":
            if message.get("tool_call_id") not in pending:
                return (
                    "Invalid parameter: messages with role 'tool' must be a response to a preceeding "
                    f"message with 'tool_calls' (messages[{i}])."
                )
            pending.remove(message["tool_call_id"])
            continue
        if pending:
            return (
                "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
                "'tool_call_id'. The following tool_call_ids did not have response messages: "
                + ", ".join(pending)
            )
        problem = _openai_message(i, role, message)
        if problem:
            return problem
        pending = [c["id"] for c in message.get("tool_calls") or []]
    return None


def _openai_message(i: int, role: Any, message: dict[str, Any]) -> str | None:
    content = message.get("content")
    if role in ("system", "developer"):
        return None if isinstance(content, str) else f"Invalid 'messages[{i}].content'."
    if role == "user":
        if isinstance(content, str) or (
            isinstance(content, list) and content and all(map(_part_ok, content))
        ):
            return None
        return f"Invalid 'messages[{i}].content': expected a string or an array of content parts."
    if role != "assistant":
        return f"Invalid value: '{role}'. Supported values are: 'system', 'user', 'assistant' and 'tool'."
    calls = message.get("tool_calls")
    if calls is not None and (not isinstance(calls, list) or not calls):
        return f"Invalid 'messages[{i}].tool_calls': empty array. Expected an array with minimum length 1."
    for j, call in enumerate(calls or []):
        function = call.get("function") or {}
        if (
            call.get("type") != "function"
            or not call.get("id")
            or not isinstance(function.get("arguments"), str)
        ):
            return (
                f"Missing required parameter: 'messages[{i}].tool_calls[{j}]' id, type or function.arguments."
            )
    if content is None and not calls:
        return f"Invalid 'messages[{i}]': an assistant message needs content or tool_calls."
    return None


def _part_ok(part: Any) -> bool:
    if not isinstance(part, dict):
        return False
    if part.get("type") == "text":
        return isinstance(part.get("text"), str)
    image = part.get("image_url")
    return part.get("type") == "image_url" and isinstance(image, dict) and isinstance(image.get("url"), str)


def last_user_text_openai(body: dict[str, Any]) -> str:
    for message in reversed(body["messages"]):
        if message.get("role") not in ("user", "tool"):
            continue
        content = message.get("content")
        if isinstance(content, list):
            return "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return str(content or "")
    return ""


def _bearer(value: str | None) -> str:
    return value[len("Bearer ") :].strip() if value and value.startswith("Bearer ") else ""
