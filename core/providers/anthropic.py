"""Anthropic Messages API provider: neutral history -> wire format, streamed chunks back.

Decisions worth knowing:
- Consecutive messages of the same role are merged. The current API would accept them, but proxies and
  older gateways do not, and a merged history is what the API builds internally anyway.
- Prompt caching uses three of the four allowed breakpoints: the system block, the last tool and the last
  block of the last message, so each turn reads the whole previous prefix from the cache.
- Each message's wire form is memoised in `Message.cache`; anything we change per call (cache marks,
  merges) is applied to copies so the memo stays valid for the next turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator, Sequence
from typing import Any, cast

import anthropic
import httpx2
from anthropic.types import MessageParam

from core.conversation import ImageBlock, Message, TextBlock, ToolResultBlock, ToolUseBlock
from core.providers.anthropic_stream import AnthropicStreamDecoder, StreamErrorEvent
from core.providers.base import (
    ProviderChunk,
    ProviderError,
    ProviderRequest,
    StopChunk,
    ToolSpec,
)
from core.providers.retry_after import retry_after_seconds
from core.providers.transport import StallWatch, timed_out

_WIRE_KEY = "anthropic.wire"
_PREFIX_KEY = "anthropic.prefix"
_CUT_OFF = "the response stream from Anthropic was cut off"
# Anthropic tool ids must match ^[a-zA-Z0-9_-]+$; ids minted by other providers may not.
_BAD_ID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
# `event: error` frames arrive inside a 200 response; these types mean "try again".
_RETRYABLE_STREAM_ERRORS = {"overloaded_error": 529, "api_error": 500, "rate_limit_error": 429}


class AnthropicProvider:
    name = "anthropic"

    def __init__(self, api_key: str | None, base_url: str | None = None, timeout_s: float = 120.0) -> None:
        self._client: anthropic.AsyncAnthropic | None = None
        self._setup_error = ""
        self._secrets = [api_key] if api_key else []
        self._timeout_s = timeout_s
        try:
            # max_retries=0: retry and fallback policy belongs to the core, not to the SDK.
            # A short connect timeout so an unreachable host fails over quickly. No read timeout: the
            # wait for headers is bounded in `stream`, and the body's stalls by a StallWatch.
            timeout = httpx2.Timeout(timeout_s, connect=min(timeout_s, 10.0), read=None)
            self._client = anthropic.AsyncAnthropic(
                api_key=api_key,
                base_url=base_url,
                max_retries=0,
                timeout=timeout,
                # The SDK's aiohttp transport: reading a token-sized SSE frame costs half what httpx's
                # default (httpcore on anyio) does, ~6 ms of CPU per 200-token reply instead of ~14.
                http_client=anthropic.DefaultAioHttpClient(timeout=timeout),
            )
        except anthropic.AnthropicError as exc:  # e.g. an unreadable credentials file
            # Reported on use, like every other failure, rather than crashing start-up.
            self._setup_error = f"the Anthropic client could not start ({type(exc).__name__})"
            return
        self._secrets += [s for s in (self._client.api_key, self._client.auth_token) if s]

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def stream(self, request: ProviderRequest) -> AsyncGenerator[ProviderChunk, None]:
        if self._client is None:
            raise ProviderError(self._setup_error)
        params = build_params(request)  # outside the try: a bug here must not pass for an API failure
        decoder = AnthropicStreamDecoder()
        started = False
        request_id: str | None = None
        watch: StallWatch | None = None
        try:
            # The raw response, not `messages.stream`: the SDK still builds the request and maps HTTP
            # errors, but its per-event pydantic models cost ~0.5 ms a token, so we decode the body.
            create = self._client.messages.with_streaming_response.create
            async with contextlib.AsyncExitStack() as body:
                async with asyncio.timeout(self._timeout_s):  # until the headers
                    response = await body.enter_async_context(create(**params, stream=True))
                started = True
                request_id = response.request_id
                http = response.http_response
                watch = StallWatch(self._timeout_s, http.aclose)
                body.push_async_callback(watch.aclose)
                async for data in http.aiter_bytes():
                    watch.saw_data()
                    for chunk in decoder.feed(data):
                        yield chunk
        except StreamErrorEvent as exc:
            # What `_status_error` makes of the SDK's APIStatusError(200) for the same frame.
            extra = {"type": exc.error_type, "request_id": request_id}
            error = _stream_event_error(exc.error_type or "error", exc.detail or "", extra)
            error.message = _scrub(error.message, self._secrets)
            raise error from exc
        except Exception as exc:
            if watch is not None and watch.stalled:
                raise watch.error("Anthropic") from exc
            mapped = _map_exception(exc, started, request.model)
            if mapped is None:
                raise
            mapped.message = _scrub(mapped.message, self._secrets)
            raise mapped from exc
        if not decoder.finished:
            if watch is not None and watch.stalled:
                raise watch.error("Anthropic")
            raise ProviderError(_CUT_OFF, retryable=True)
        yield decoder.usage
        yield StopChunk(decoder.stop_reason)


# --- request building -------------------------------------------------------------------------------


def build_params(request: ProviderRequest) -> dict[str, Any]:
    """Keyword arguments for `client.messages.create(stream=True)` (public so tests can assert the exact
    body)."""
    params: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens,
        "messages": cast("list[MessageParam]", wire_messages(request.messages)),
    }
    if request.system.strip():
        params["system"] = [{"type": "text", "text": request.system, "cache_control": _ephemeral()}]
    if request.tools:
        params["tools"] = _wire_tools(request.tools)
    return params


def wire_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Wire messages with same-role runs merged and a cache breakpoint on the very last block."""
    out, start = _resume(messages)
    for message in messages[start:]:
        wire = message_wire(message)
        if not wire["content"]:
            continue  # e.g. an assistant turn that produced only whitespace
        if out and out[-1]["role"] == wire["role"]:
            out[-1] = _merged(out[-1], wire)
        else:
            out.append(wire)
    if messages:
        # Memo for the next call of this conversation, which sends the same messages plus a few more.
        messages[-1].cache[_PREFIX_KEY] = (messages[0], len(messages), list(out))
    if out:
        last = out[-1]
        content = list(last["content"])
        content[-1] = {**content[-1], "cache_control": _ephemeral()}
        out[-1] = {**last, "content": content}
    return out


def _resume(messages: Sequence[Message]) -> tuple[list[dict[str, Any]], int]:
    """The merged wire list of the longest prefix a previous call already built, and where it ends.

    Only one memo lives per conversation (it moves to the newest last message), and it is used only
    when it was built from the same first message at the same position, so a compaction or a new
    summary, which change the first message, start afresh.
    """
    for index in range(len(messages) - 1, max(len(messages) - 8, 0) - 1, -1):
        memo = messages[index].cache.get(_PREFIX_KEY)
        if memo is not None and memo[0] is messages[0] and memo[1] == index + 1:
            del messages[index].cache[_PREFIX_KEY]
            return list(memo[2]), index + 1
    return [], 0


def message_wire(message: Message) -> dict[str, Any]:
    """The memoised wire form of one message. Callers must treat it as read-only."""
    wire: dict[str, Any] | None = message.cache.get(_WIRE_KEY)
    if wire is None:
        blocks = [b for b in (_wire_block(message.role, block) for block in message.blocks) if b]
        wire = {"role": message.role, "content": _results_first(blocks)}
        message.cache[_WIRE_KEY] = wire
    return wire


def _merged(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    return {"role": first["role"], "content": _results_first([*first["content"], *second["content"]])}


def _results_first(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # The API requires tool_result blocks before any other content in a user message.
    results = [b for b in blocks if b["type"] == "tool_result"]
    others = [b for b in blocks if b["type"] != "tool_result"]
    return results + others


def _wire_block(role: str, block: object) -> dict[str, Any] | None:
    """One neutral block as an Anthropic content block, or None when the API would reject it."""
    if isinstance(block, TextBlock):
        # The API rejects empty or whitespace-only text blocks.
        return {"type": "text", "text": block.text} if block.text.strip() else None
    if isinstance(block, ToolUseBlock) and role == "assistant":
        return {"type": "tool_use", "id": _tool_id(block.id), "name": block.name, "input": block.input}
    if isinstance(block, ToolResultBlock) and role == "user":
        result: dict[str, Any] = {"type": "tool_result", "tool_use_id": _tool_id(block.tool_use_id)}
        if block.content:  # content is optional; an empty string is better left out
            result["content"] = block.content
        result["is_error"] = block.is_error
        return result
    if isinstance(block, ImageBlock) and role == "user":
        return _wire_image(block)
    return None  # a block in the wrong role (e.g. an image from the assistant) cannot be sent


def _wire_image(block: ImageBlock) -> dict[str, Any] | None:
    if block.data_b64:
        source = {"type": "base64", "media_type": block.media_type, "data": block.data_b64}
        return {"type": "image", "source": source}
    if block.url:
        return {"type": "image", "source": {"type": "url", "url": block.url}}
    return None


def _tool_id(raw: str) -> str:
    return _BAD_ID_CHARS.sub("_", raw) or "tool"


def _wire_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    wire: list[dict[str, Any]] = [
        {"name": t.name, "description": t.description, "input_schema": t.input_schema} for t in tools
    ]
    wire[-1]["cache_control"] = _ephemeral()  # fresh dicts, so marking in place is safe
    return wire


def _ephemeral() -> dict[str, str]:
    return {"type": "ephemeral"}


# --- error mapping ----------------------------------------------------------------------------------


def _map_exception(exc: Exception, started: bool, model: str) -> ProviderError | None:
    """A ProviderError for anything the SDK or transport raised; None for our own bugs."""
    if isinstance(exc, anthropic.APIStatusError):
        return _status_error(exc, model)
    if isinstance(exc, anthropic.APIConnectionError | httpx2.HTTPError | httpx2.StreamError):
        if started:
            return ProviderError(_CUT_OFF, retryable=True)
        if timed_out(exc, isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException)):
            return ProviderError("Anthropic did not answer in time", retryable=True)
        return ProviderError("could not connect to Anthropic", retryable=True)
    if isinstance(exc, TimeoutError) and not started:  # the headers did not come in time
        return ProviderError("Anthropic did not answer in time", retryable=True)
    if isinstance(exc, TypeError) and "authentication" in str(exc):
        return ProviderError("no Anthropic API key is configured (set ANTHROPIC_API_KEY)")
    if isinstance(exc, anthropic.AnthropicError | ValueError | RuntimeError):
        # Malformed JSON in a frame, events out of order, an unparsable body: a retry may well succeed.
        return ProviderError(f"Anthropic sent a malformed response ({type(exc).__name__})", retryable=True)
    return None


def _status_error(exc: anthropic.APIStatusError, model: str) -> ProviderError:
    status = exc.status_code
    detail = exc.api_message or ""
    extra = {"type": exc.type, "request_id": exc.request_id}
    if status == 200:  # an `event: error` frame inside the stream
        return _stream_event_error(exc.type or "error", detail, extra)
    if status == 429:
        retry_after = retry_after_seconds(exc.response.headers)
        message = "Anthropic is rate limiting requests (429)"
        return ProviderError(message, retryable=True, retry_after=retry_after, status=status, extra=extra)
    if status == 529:
        retry_after = retry_after_seconds(exc.response.headers)
        message = "Anthropic is overloaded (529)"
        return ProviderError(message, retryable=True, retry_after=retry_after, status=status, extra=extra)
    if status in (408, 409) or status >= 500:
        message = f"Anthropic had a server error ({status})"
        return ProviderError(message, retryable=True, status=status, extra=extra)
    return ProviderError(_client_error_message(status, detail, model, exc.type), status=status, extra=extra)


def _client_error_message(status: int, detail: str, model: str, error_type: str | None) -> str:
    if status == 401:
        return "Anthropic rejected the API key (401)"
    if status == 403:
        return f"Anthropic refused the request (403): {detail}".rstrip(": ")
    if status == 404:
        if error_type is None:  # not an API error body: the base URL points somewhere else
            return "no Anthropic API at the configured base URL (404)"
        return f"Anthropic does not know model '{model}' (404)"
    if status == 413:
        return "the request is too large for Anthropic (413)"
    return f"Anthropic rejected the request ({status}): {detail}".rstrip(": ")


def _stream_event_error(error_type: str, detail: str, extra: dict[str, Any]) -> ProviderError:
    status = _RETRYABLE_STREAM_ERRORS.get(error_type)
    message = f"Anthropic reported {error_type} mid-stream"
    if detail:
        message += f": {detail}"
    # `status` carries the HTTP status the same failure would have had before streaming began.
    return ProviderError(message, retryable=status is not None, status=status or 400, extra=extra)


def _scrub(message: str, secrets: Sequence[str]) -> str:
    # Belt and braces: error texts come partly from the server, which could echo a credential.
    for secret in secrets:
        message = message.replace(secret, "***")
    return message
