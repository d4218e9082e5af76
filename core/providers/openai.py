"""OpenAI Chat Completions provider, also used for OpenAI-compatible servers (Ollama, vLLM, llama.cpp).

Decisions worth knowing:
- Chat Completions rather than Responses: it is what every compatible server speaks.
- The output limit goes in `max_completion_tokens` for api.openai.com (newer models reject `max_tokens`)
  and in `max_tokens` for any other server (many compatible servers only know that one).
- Each message's wire form (a list: tool results become separate `tool` messages) is memoised in
  `Message.cache`; we never modify it after storing it.
- Tool calls are only yielded when the stream finishes, because arguments arrive in fragments.
- The SSE body is decoded by core/providers/openai_stream.py, not by the SDK (a model per chunk is
  too slow); the SDK still builds the request and maps HTTP errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any, cast

import anyio
import httpx2
import openai
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam, ChatCompletionToolParam
from openai.types.completion_usage import CompletionUsage

from core.conversation import ImageBlock, Message, TextBlock, ToolUseBlock
from core.providers.base import (
    ProviderChunk,
    ProviderError,
    ProviderRequest,
    StopChunk,
    ToolSpec,
    UsageChunk,
)
from core.providers.openai_stream import OpenAIStreamDecoder, StreamErrorFrame
from core.providers.retry_after import retry_after_seconds
from core.providers.transport import StallWatch, timed_out

_WIRE_KEY = "openai.wire"
_OFFICIAL_HOST = "api.openai.com"


class OpenAIProvider:
    name = "openai"

    def __init__(self, api_key: str | None, base_url: str | None = None, timeout_s: float = 120.0) -> None:
        if api_key is None and base_url and not os.environ.get("OPENAI_API_KEY"):
            api_key = "unused"  # local servers need no key, but the SDK refuses to start without one
        self._client: openai.AsyncOpenAI | None = None
        self._setup_error: str | None = None
        self._secrets = [api_key] if api_key and api_key != "unused" else []
        self._timeout_s = timeout_s
        self.label = "OpenAI"
        self.official = False
        try:
            # max_retries=0: retry and fallback policy belongs to the core, not to the SDK.
            # A short connect timeout so an unreachable host fails over quickly. No read timeout: the
            # wait for headers is bounded in `stream`, and the body's stalls by a StallWatch.
            timeout = httpx2.Timeout(timeout_s, connect=min(timeout_s, 10.0), read=None)
            self._client = openai.AsyncOpenAI(
                api_key=api_key,
                base_url=base_url,
                max_retries=0,
                timeout=timeout,
                # The SDK's aiohttp transport: a token-sized SSE frame costs half what httpx's default
                # transport (httpcore on anyio) does (see core/providers/anthropic.py).
                http_client=openai.DefaultAioHttpClient(timeout=timeout),
            )
        except openai.OpenAIError:
            # Raised for a missing key. Report it on use, like every other failure, not at start-up.
            self._setup_error = "no OpenAI API key is configured (set OPENAI_API_KEY)"
            return
        self._secrets += [self._client.api_key] if self._client.api_key != "unused" else []
        url = self._client.base_url
        self.official = url.host == _OFFICIAL_HOST
        if not self.official:
            # Host and port only: the URL could carry credentials in its userinfo or query.
            netloc = f"{url.host}:{url.port}" if url.port else url.host
            self.label = f"the OpenAI-compatible server at {netloc}"

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def stream(self, request: ProviderRequest) -> AsyncGenerator[ProviderChunk, None]:
        if self._client is None:
            raise ProviderError(self._setup_error or "the OpenAI client is not available")
        # Built outside the try: a bug here must not pass for an API failure.
        messages = cast("list[ChatCompletionMessageParam]", wire_messages(request.system, request.messages))
        tools = cast("list[ChatCompletionToolParam]", wire_tools(request.tools))
        decoder = OpenAIStreamDecoder()
        started = False
        watch: StallWatch | None = None
        try:
            # The raw response, not the SDK's AsyncStream: the SDK still builds the request and maps HTTP
            # errors, but its pydantic model per token-sized chunk costs ~0.5 ms, so we decode the body.
            create = self._client.chat.completions.with_streaming_response.create
            async with contextlib.AsyncExitStack() as stack:
                async with asyncio.timeout(self._timeout_s):  # until the headers
                    response = await stack.enter_async_context(
                        create(
                            model=request.model,
                            messages=messages,
                            tools=tools or openai.omit,
                            stream=True,
                            stream_options={"include_usage": True},
                            max_completion_tokens=request.max_tokens if self.official else openai.omit,
                            max_tokens=openai.omit if self.official else request.max_tokens,
                        )
                    )
                started = True
                http = response.http_response
                watch = StallWatch(self._timeout_s, http.aclose)
                stack.push_async_callback(watch.aclose)
                try:
                    body = http.aiter_bytes()
                    async for data in body:
                        watch.saw_data()
                        for chunk in decoder.feed(data):
                            yield chunk
                        if decoder.failure is not None:
                            raise decoder.failure
                        if decoder.done:
                            if http.http_version == "HTTP/1.1":  # as the SDK: HTTP/2 needs no drain
                                await _drain(body)
                            break
                    else:
                        decoder.close()
                except StreamErrorFrame as exc:
                    # The SDK's own error for the frame, so the mapping below stays the one place.
                    raise openai.APIError(exc.message, http.request, body=exc.body) from exc
                except _SDK_CONNECTION_ERRORS as exc:
                    raise openai.APIConnectionError(request=http.request) from exc
        except Exception as exc:
            # After the finish chunk the answer is complete; a drop there only loses the usage chunk.
            if not (decoder.finish_reason and _is_transport_error(exc)):
                if watch is not None and watch.stalled:
                    raise watch.error(self.label) from exc
                error = self._mapped(exc, started, request.model)
                if error is None:
                    raise  # not an SDK or transport failure: our own bug, let it surface unchanged
                raise error from exc
        if decoder.finish_reason is None:
            if watch is not None and watch.stalled:
                raise watch.error(self.label)
            raise ProviderError(f"the response stream from {self.label} was cut off", retryable=True)
        for call in decoder.tool_calls():
            yield call
        if decoder.usage is not None:  # some compatible servers never send it; record nothing then
            yield _usage(_completion_usage(decoder.usage))
        yield StopChunk(decoder.stop_reason())

    def _mapped(self, exc: Exception, started: bool, model: str) -> ProviderError | None:
        error = _map_exception(exc, started, model, self.label)
        if error is None:
            return None
        for secret in self._secrets:
            error.message = error.message.replace(secret, "***")
        return error


# --- streaming --------------------------------------------------------------------------------------

# Not httpx2 errors, but the SDK's stream reading turns them into APIConnectionError (TLS failures that
# httpx2 does not map yet), so a read of the raw body must too.
_SDK_CONNECTION_ERRORS = (ssl.SSLError, anyio.EndOfStream)
_DRAIN_TIMEOUT_S = 0.1  # the SDK's


async def _drain(body: AsyncIterator[bytes]) -> None:
    """Read what follows `[DONE]`, briefly, as the SDK does, so the HTTP/1.1 connection can be reused."""
    try:
        async with asyncio.timeout(_DRAIN_TIMEOUT_S):
            async for _ in body:
                await asyncio.sleep(0)  # a transport with buffered data never suspends: let the timeout act
    except (TimeoutError, httpx2.RequestError, httpx2.StreamConsumed, *_SDK_CONNECTION_ERRORS):
        pass  # the answer is complete; cleanup must not turn it into an error


def _completion_usage(raw: dict[str, Any]) -> CompletionUsage:
    # Once per stream, so the SDK's own (lenient) model is affordable: the numbers come out exactly as
    # with the SDK's chunk objects, coercions included.
    return cast("CompletionUsage", ChatCompletionChunk.construct(usage=raw).usage)


def _usage(usage: CompletionUsage) -> UsageChunk:
    # prompt_tokens includes cached tokens (and tokens written to the cache); report them apart so the
    # numbers mean the same as Anthropic's, whose three input counters add up to the prompt.
    details = usage.prompt_tokens_details
    cached = (details.cached_tokens or 0) if details else 0
    written = (details.cache_write_tokens or 0) if details else 0
    return UsageChunk(
        input_tokens=max(0, (usage.prompt_tokens or 0) - cached - written),
        output_tokens=usage.completion_tokens or 0,
        cache_read_tokens=cached,
        cache_write_tokens=written,
    )


# --- request building -------------------------------------------------------------------------------


def wire_messages(system: str, messages: Sequence[Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system.strip() else []
    for message in messages:
        out.extend(message_wire(message))
    return out


def message_wire(message: Message) -> list[dict[str, Any]]:
    """The memoised wire messages for one neutral message. Callers must treat them as read-only."""
    wire: list[dict[str, Any]] | None = message.cache.get(_WIRE_KEY)
    if wire is None:
        wire = _user_wire(message) if message.role == "user" else _assistant_wire(message)
        message.cache[_WIRE_KEY] = wire
    return wire


def _user_wire(message: Message) -> list[dict[str, Any]]:
    # Tool messages must directly follow the assistant's tool calls, so they go before any text.
    out: list[dict[str, Any]] = [
        {
            "role": "tool",
            "tool_call_id": r.tool_use_id,
            "content": ("ERROR: " if r.is_error else "") + r.content,
        }
        for r in message.tool_results
    ]
    parts = [p for p in (_user_part(b) for b in message.blocks) if p]
    if len(parts) == 1 and parts[0]["type"] == "text":
        out.append({"role": "user", "content": parts[0]["text"]})  # plain string: widest server support
    elif parts:
        out.append({"role": "user", "content": parts})
    return out


def _user_part(block: object) -> dict[str, Any] | None:
    if isinstance(block, TextBlock) and block.text:
        return {"type": "text", "text": block.text}
    if isinstance(block, ImageBlock):
        url = f"data:{block.media_type};base64,{block.data_b64}" if block.data_b64 else block.url
        return {"type": "image_url", "image_url": {"url": url}} if url else None
    return None


def _assistant_wire(message: Message) -> list[dict[str, Any]]:
    text = "".join(b.text for b in message.blocks if isinstance(b, TextBlock))
    calls = [_wire_call(b) for b in message.blocks if isinstance(b, ToolUseBlock)]
    if not text and not calls:
        return []
    wire: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:  # an empty `tool_calls` list is rejected
        wire["tool_calls"] = calls
    return [wire]


def _wire_call(block: ToolUseBlock) -> dict[str, Any]:
    function = {"name": block.name, "arguments": json.dumps(block.input)}
    return {"id": block.id, "type": "function", "function": function}


def wire_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description, "parameters": t.input_schema},
        }
        for t in tools
    ]


# --- error mapping ----------------------------------------------------------------------------------


def _is_transport_error(exc: Exception) -> bool:
    return isinstance(exc, openai.APIConnectionError | httpx2.HTTPError | httpx2.StreamError)


def _map_exception(exc: Exception, started: bool, model: str, label: str) -> ProviderError | None:
    if isinstance(exc, openai.APIStatusError):
        return _status_error(exc, model, label)
    if _is_transport_error(exc):
        if started:
            return ProviderError(f"the response stream from {label} was cut off", retryable=True)
        if timed_out(exc, isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException)):
            return ProviderError(f"{label} did not answer in time", retryable=True)
        return ProviderError(f"could not connect to {label}", retryable=True)
    if isinstance(exc, TimeoutError) and not started:  # the headers did not come in time
        return ProviderError(f"{label} did not answer in time", retryable=True)
    if isinstance(exc, openai.APIError):  # an `{"error": ...}` frame inside the stream
        detail = _detail(exc.body)
        message = f"{label} reported an error mid-stream" + (f": {detail}" if detail else "")
        return ProviderError(message, retryable=True, extra={"code": exc.code, "type": exc.type})
    if isinstance(exc, openai.OpenAIError | ValueError | RuntimeError):
        return ProviderError(f"{label} sent a malformed response ({type(exc).__name__})", retryable=True)
    return None


def _status_error(exc: openai.APIStatusError, model: str, label: str) -> ProviderError:
    status = exc.status_code
    extra = {"code": exc.code, "type": exc.type, "request_id": exc.request_id}
    if status == 429 and exc.code == "insufficient_quota":  # billing, not pacing: retrying cannot help
        return ProviderError(f"{label} says the account has no quota left (429)", status=429, extra=extra)
    if status == 429:
        retry_after = retry_after_seconds(exc.response.headers)
        message = f"{label} is rate limiting requests (429)"
        return ProviderError(message, retryable=True, retry_after=retry_after, status=status, extra=extra)
    if status in (408, 409) or status >= 500:
        message = f"{label} had a server error ({status})"
        retry_after = retry_after_seconds(exc.response.headers)
        return ProviderError(message, retryable=True, retry_after=retry_after, status=status, extra=extra)
    return ProviderError(
        _client_error_message(status, _detail(exc.body), model, label), status=status, extra=extra
    )


def _client_error_message(status: int, detail: str, model: str, label: str) -> str:
    if status == 401:
        # Not the server's text: OpenAI's own 401 message quotes part of the key.
        return f"{label} rejected the API key (401)"
    if status == 404:
        return f"{label} does not know model '{model}' (404)"
    what = "refused" if status == 403 else "rejected"
    return f"{label} {what} the request ({status})" + (f": {detail}" if detail else "")


def _detail(body: object) -> str:
    if isinstance(body, dict):
        message = body.get("message")
        return message if isinstance(message, str) else ""
    return body.strip()[:300] if isinstance(body, str) else ""
