"""A local fake of the Anthropic Messages and OpenAI Chat Completions streaming APIs.

It speaks the real wire formats (SSE frames as the real services send them), so tests drive the real
SDKs through our providers. Script answers per provider; unscripted calls get an echo of the last user
text, so end-to-end tests work without scripting:

    server.script("anthropic", Reply.text("Hello world", chunks=3), Reply.rate_limited(retry_after=0.05))
    server.script("openai", Reply.tool_calls(("get_time", {"tz": "UTC"})))

Requests are validated the way the real APIs validate them (the rules our code could break), and a
violation is answered with the provider's 400 error, so a test fails when the real API would refuse.

Replies of real length at a real pace: `Reply.streamed(text, tokens_per_s=50, first_token_s=0.3)`
streams one word per content frame. For many concurrent conversations, set `server.responder` (called
for every request the script queue does not answer) to choose each reply from the request itself.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from aiohttp import web

from tests.fakes.llm_wire import (
    Frame,
    anthropic_error_body,
    anthropic_frames,
    check_anthropic,
    check_openai,
    last_user_text_anthropic,
    last_user_text_openai,
    openai_error_body,
    openai_frames,
)
from tests.ports import serve_on_free_port

ProviderName = Literal["anthropic", "openai"]


@dataclass(frozen=True)
class Usage:
    """Token counts a reply reports. `input` is uncached input, as in Anthropic's usage."""

    input: int = 10
    output: int = 5
    cache_read: int = 0
    cache_write: int = 0


@dataclass(frozen=True)
class ToolScript:
    name: str
    arguments: str  # raw JSON text as the model "wrote" it (may be invalid on purpose)
    id: str | None = None  # None: the server mints a provider-style id


@dataclass(frozen=True)
class Reply:
    """One scripted answer. Build it with the static constructors below; the streaming ones take
    `delay_s` (sleep before each content frame, for cancellation tests) and `usage`, and any reply can
    be adjusted with `.with_(field=...)`."""

    text_chunks: tuple[str, ...] = ()
    tools: tuple[ToolScript, ...] = ()
    usage: Usage = field(default_factory=Usage)
    delay_s: float = 0.0
    stop_reason: str | None = None  # neutral ("end_turn", "tool_use", "max_tokens"); None: inferred
    status: int = 200  # anything else: an HTTP error reply with the provider's JSON error body
    error_type: str | None = None  # Anthropic `error.type` / OpenAI `error.code`; None: from the status
    error_message: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    cut_after: int | None = None  # stop after this many content frames, without the terminal events
    abort: bool = True  # how a cut ends: reset the connection, or end the body cleanly
    error_after: int | None = None  # send an in-stream error frame after this many content frames
    send_usage: bool = True  # openai: send the usage chunk when the request asks for it
    first_delay_s: float | None = None  # sleep before the first content frame instead of `delay_s`

    @staticmethod
    def text(text: str, chunks: int = 1, *, usage: Usage | None = None, delay_s: float = 0.0) -> Reply:
        return Reply(text_chunks=split(text, chunks), usage=usage or Usage(), delay_s=delay_s)

    @staticmethod
    def streamed(
        text: str,
        *,
        tokens_per_s: float = 50.0,
        first_token_s: float = 0.3,
        usage: Usage | None = None,
    ) -> Reply:
        """`text` streamed one word (with the space before it) per content frame: the first after
        `first_token_s`, the rest at `tokens_per_s` (a real model's pace)."""
        words = text.split(" ")
        chunks = tuple(word if i == 0 else " " + word for i, word in enumerate(words))
        counted = usage or Usage(output=len(chunks))
        return Reply(
            text_chunks=chunks,
            usage=counted,
            delay_s=1.0 / tokens_per_s if tokens_per_s > 0 else 0.0,
            first_delay_s=first_token_s,
        )

    @staticmethod
    def tool_calls(*calls: tuple[Any, ...], usage: Usage | None = None, delay_s: float = 0.0) -> Reply:
        """Each call is `(name, input_dict)` or `(name, input_dict, id)`."""
        return Reply(tools=tuple(_tool(c) for c in calls), usage=usage or Usage(), delay_s=delay_s)

    @staticmethod
    def text_then_tools(
        text: str, *calls: tuple[Any, ...], chunks: int = 1, usage: Usage | None = None, delay_s: float = 0.0
    ) -> Reply:
        return replace(
            Reply.tool_calls(*calls, usage=usage, delay_s=delay_s), text_chunks=split(text, chunks)
        )

    @staticmethod
    def invalid_tool_args(name: str = "calc", raw: str = '{"expression": "1+') -> Reply:
        return Reply(tools=(ToolScript(name, raw),))

    @staticmethod
    def rate_limited(retry_after: float = 0.05, *, header: str = "retry-after") -> Reply:
        """429. `header="retry-after-ms"` sends milliseconds instead of seconds."""
        value = str(round(retry_after * 1000)) if header == "retry-after-ms" else str(retry_after)
        return Reply(status=429, headers=((header, value),), error_message="Rate limit exceeded")

    @staticmethod
    def server_error(status: int = 500) -> Reply:
        return Reply(status=status, error_message="Internal server error")

    @staticmethod
    def overloaded() -> Reply:
        """Anthropic's 529 overloaded_error (OpenAI has no 529: it gets a 503)."""
        return Reply(status=529, error_type="overloaded_error", error_message="Overloaded")

    @staticmethod
    def error(status: int, message: str = "scripted error", error_type: str | None = None) -> Reply:
        """Any HTTP error with the provider's error body, e.g. `Reply.error(400, "prompt is too long")`."""
        return Reply(status=status, error_type=error_type, error_message=message)

    @staticmethod
    def cut(after_chunks: int = 2, *, abort: bool = True, text: str = "this answer never ends") -> Reply:
        return replace(Reply.text(text, chunks=max(after_chunks + 1, 3)), cut_after=after_chunks, abort=abort)

    @staticmethod
    def stream_error(
        after_chunks: int = 1, error_type: str = "overloaded_error", message: str = "Overloaded"
    ) -> Reply:
        """An error frame mid-stream (Anthropic `event: error`; OpenAI `data: {"error": ...}`)."""
        base = Reply.text("partial answer before the error", chunks=max(after_chunks + 1, 3))
        return replace(base, error_after=after_chunks, error_type=error_type, error_message=message)

    def with_(self, **changes: Any) -> Reply:
        """A copy with fields changed, e.g. `Reply.text("hi").with_(send_usage=False)`."""
        return replace(self, **changes)


# Picks the reply to one request (provider, parsed JSON body); None: the default echo.
Responder = Callable[[ProviderName, Any], Reply | None]


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON (None when the body was not JSON)

    @property
    def provider(self) -> ProviderName:
        return "anthropic" if self.path.startswith("/v1/messages") else "openai"


class FakeLLMServer:
    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.unknown_models: set[str] = set()  # answered with 404 not_found
        self.api_keys: set[str] | None = None  # None: any key is accepted; else others get a 401
        self.port = 0
        self.responder: Responder | None = None  # replies to requests the script queue does not answer
        self.streaming = 0  # response bodies being written now
        self.finished: list[tuple[Any, Reply]] = []  # (request body, reply) of streams written to the end
        self.last_activity = 0.0  # time.monotonic() of the last request or frame written
        self._queues: dict[str, deque[Reply]] = {"anthropic": deque(), "openai": deque()}
        self._runner: web.AppRunner | None = None

    @property
    def anthropic_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"  # the SDK appends /v1/messages

    @property
    def openai_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, provider: ProviderName, *replies: Reply) -> None:
        """Queue replies for one provider's endpoint; each request consumes the next one."""
        self._queues[provider].extend(replies)

    def bodies(self, provider: ProviderName) -> list[Any]:
        return [r.body for r in self.requests if r.provider == provider]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/messages", self._anthropic)
        app.router.add_post("/v1/chat/completions", self._openai)
        app.on_response_prepare.append(_add_request_id)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        self.port = await serve_on_free_port(self._runner)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _record(self, request: web.Request) -> Any:
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append(RecordedRequest(request.path, headers, body))
        self.last_activity = time.monotonic()
        return body

    def _next(self, provider: ProviderName, echo: str, body: Any = None) -> Reply:
        queue = self._queues[provider]
        if queue:
            return queue.popleft()
        chosen = self.responder(provider, body) if self.responder is not None else None
        return chosen if chosen is not None else Reply.text(f"echo: {echo}", chunks=2)

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        problem = check_anthropic(request.headers, body, self.api_keys, self.unknown_models)
        if problem is not None:
            return web.json_response(anthropic_error_body(problem[1], problem[2]), status=problem[0])
        reply = self._next("anthropic", last_user_text_anthropic(body), body)
        if reply.status != 200:
            error_type = reply.error_type or _ANTHROPIC_TYPES.get(reply.status, "api_error")
            payload = anthropic_error_body(error_type, reply.error_message)
            return web.json_response(payload, status=reply.status, headers=dict(reply.headers))
        return await self._stream(request, anthropic_frames(reply, body["model"]), reply, body)

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        problem = check_openai(request.headers, body, self.api_keys, self.unknown_models)
        if problem is not None:
            status, code, message = problem
            return web.json_response(openai_error_body(message, code=code, status=status), status=status)
        reply = self._next("openai", last_user_text_openai(body), body)
        if reply.status != 200:
            status = 503 if reply.status == 529 else reply.status
            payload = openai_error_body(reply.error_message, code=reply.error_type, status=status)
            return web.json_response(payload, status=status, headers=dict(reply.headers))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return await self._stream(request, openai_frames(reply, body["model"], include_usage), reply, body)

    async def _stream(
        self, request: web.Request, frames: list[Frame], reply: Reply, body: Any = None
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        sent = 0
        self.streaming += 1
        try:
            for payload, is_content in frames:
                if is_content and sent == reply.cut_after:
                    return _cut(request, response, reply.abort)
                first = sent == 0 and reply.first_delay_s is not None
                delay = reply.first_delay_s if first else reply.delay_s
                if is_content and delay:
                    await asyncio.sleep(delay)
                await response.write(payload)
                self.last_activity = time.monotonic()
                sent += is_content
            await response.write_eof()
            self.finished.append((body, reply))
        except (ConnectionResetError, ConnectionError):
            pass  # the client went away (a cancelled stream): nothing left to do
        finally:
            self.streaming -= 1
            self.last_activity = time.monotonic()
        return response


async def _add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    # Both APIs stamp every response; the SDKs expose it as `request_id` on errors.
    name = "request-id" if request.path.startswith("/v1/messages") else "x-request-id"
    response.headers[name] = f"req_{uuid.uuid4().hex[:24]}"


def _cut(request: web.Request, response: web.StreamResponse, abort: bool) -> web.StreamResponse:
    if abort and request.transport is not None:
        request.transport.abort()  # no terminating chunk: the client sees a broken body
    return response


def split(text: str, chunks: int) -> tuple[str, ...]:
    """`text` in `chunks` consecutive pieces (fewer if it is shorter) that join back exactly."""
    chunks = max(1, min(chunks, len(text) or 1))
    size, extra = divmod(len(text), chunks)
    pieces, start = [], 0
    for index in range(chunks):
        end = start + size + (1 if index < extra else 0)
        pieces.append(text[start:end])
        start = end
    return tuple(pieces)


def _tool(call: tuple[Any, ...]) -> ToolScript:
    name, arguments = call[0], call[1]
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return ToolScript(name, raw, call[2] if len(call) > 2 else None)


_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
