"""A reply streamed with Slack's native methods (chat.startStream / appendStream / stopStream).

Text is appended on a per-stream timer (never per character count, never one global timer): the first
text goes out at once, later text is coalesced into at most one append per `interval_s`. Tool calls are
task updates inside the stream. A stream message that would grow past the Markdown limit, or that is
near Slack's ~5-minute streaming window, is stopped and the reply continues in a fresh one. When a
stream cannot be started (a 429, or a host without the methods) the rest of the reply falls back to
post + edit, carrying over every character not yet shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_chat_stream import AsyncChatStream

from adapters.slack.format import failure_line
from adapters.slack.inbound import defuse_mass_mentions
from adapters.slack.post import PostWriter
from adapters.slack.target import Transport, error_code, status_code

log = logging.getLogger(__name__)

MAX_STREAM_CHARS = 12_000  # markdown_text limit; also where one stream message ends
_FENCE = re.compile(r"^\s*(```+|~~~+)(.*)$", re.MULTILINE)
# Errors saying this host or app cannot stream at all: stop trying for the process's lifetime.
_NO_STREAMING = frozenset(
    {"unknown_method", "method_not_supported_for_channel_type", "not_allowed_token_type"}
)


class StreamGate:
    """Shared by all replies: after a 429 on chat.startStream nobody starts a stream until Retry-After
    has passed (one 429 must not become hundreds), and a host without streaming is asked only once."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._closed_until = 0.0

    def open(self) -> bool:
        return self._clock() >= self._closed_until

    def refused(self, error: SlackApiError) -> None:
        if error_code(error) in _NO_STREAMING:
            log.warning("Slack refused native streaming (%s); posting and editing instead", error_code(error))
            self._closed_until = float("inf")
        elif status_code(error) == 429:
            retry_after = _retry_after(error)
            self._closed_until = max(self._closed_until, self._clock() + retry_after)


def _retry_after(error: SlackApiError) -> float:
    headers: Any = getattr(error.response, "headers", {}) or {}
    for name, value in dict(headers).items():
        if name.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) else value
            with contextlib.suppress(ValueError):
                return max(1.0, float(raw))
    return 1.0


def cut_point(text: str, room: int) -> int:
    """Where to end a stream message so it fits `room`: a paragraph, line or word break in the second
    half of the window, else a hard cut."""
    window = text[:room]
    for separator in ("\n\n", "\n", " "):
        at = window.rfind(separator)
        if at >= room // 2:
            return at + len(separator)
    return room


def open_fence(text: str) -> str | None:
    opening: str | None = None
    for match in _FENCE.finditer(text):
        opening = None if opening is not None else match.group(1) + match.group(2).strip()
    return opening


class StreamWriter:
    def __init__(
        self,
        transport: Transport,
        gate: StreamGate,
        fallback: Callable[[], PostWriter],
        *,
        interval_s: float,
        rollover_s: float,
        clock: Callable[[], float],
    ) -> None:
        self._transport = transport
        self._gate = gate
        self._make_fallback = fallback
        self._interval = interval_s
        self._rollover = rollover_s
        self._clock = clock
        self._pending = ""
        self._undelivered = ""  # taken from _pending but not yet on Slack (restored if a call fails)
        self._stream: AsyncChatStream | None = None
        self._shown = ""  # text of the current stream message
        self._started_at = 0.0
        self._last_flush = -1e9
        self._lock = asyncio.Lock()
        self._dirty = asyncio.Event()
        self._pacer: asyncio.Task[None] | None = None
        self.fallback: PostWriter | None = None
        self.calls = 0

    async def text(self, delta: str) -> None:
        if self.fallback is not None:
            await self.fallback.text(delta)
            return
        self._pending += delta
        self._dirty.set()
        if self._pacer is None:
            self._pacer = asyncio.create_task(self._pace())

    async def _pace(self) -> None:
        while True:
            await self._dirty.wait()
            wait = self._last_flush + self._interval - self._clock()
            if wait > 0:
                await asyncio.sleep(wait)
            self._dirty.clear()
            try:
                await self._flush()
            except Exception:  # keep the text; the next tick or the final flush tries again
                log.warning("interim stream append failed", exc_info=True)
                self._dirty.set()

    async def chunk(self, chunk: dict[str, Any]) -> bool:
        """Send a task update now (with any text before it); False if the reply fell back to posts."""
        if self.fallback is None:
            await self._flush(chunk)
        return self.fallback is None

    async def _flush(self, chunk: dict[str, Any] | None = None) -> None:
        async with self._lock:
            text, self._pending = self._pending, ""
            if self.fallback is not None:  # another flush fell back while this one waited
                if text:
                    await self.fallback.text(text)
                return
            if not text.strip() and chunk is None:
                self._pending = text + self._pending  # a stream cannot start blank: wait for words
                return
            self._last_flush = self._clock()
            self._undelivered = text
            try:
                await self._send(text, chunk)
            except BaseException:  # a failed call, or cancellation mid-call: keep the text
                self._pending = self._undelivered + self._pending
                raise
            finally:
                self._undelivered = ""

    async def _send(self, text: str, chunk: dict[str, Any] | None) -> None:
        while True:
            if self._stream is not None and self._clock() - self._started_at > self._rollover:
                text = await self._end_message() + text
            room = MAX_STREAM_CHARS - len(self._shown) - 8  # keep room to close a code fence
            cut = cut_point(text, room) if len(text) > room else len(text)
            head, rest = text[:cut], text[cut:]
            if not await self._deliver(head, None if rest else chunk):
                assert self.fallback is not None
                if text.strip():
                    await self.fallback.text(text)
                return
            self._undelivered = rest
            if not rest:
                return
            text = await self._end_message() + rest

    async def _deliver(self, text: str, chunk: dict[str, Any] | None) -> bool:
        """Append to the current stream message or start one; False if the reply fell back to posts."""
        chunks: list[dict[str, Any]] = (
            [{"type": "markdown_text", "text": defuse_mass_mentions(text)}] if text else []
        )
        if chunk is not None:
            chunks.append(chunk)
        if not chunks:
            return True
        if self._stream is not None:
            try:
                self.calls += 1
                await self._stream.append(chunks=chunks)
                self._shown += text
                return True
            except SlackApiError as error:
                if status_code(error) == 429:
                    raise  # still rate-limited after the client's retries: keep the stream, retry later
                # Expired (message_not_in_streaming_state) or otherwise gone: continue in a new message.
                log.info("stream append failed (%s); continuing in a new message", error_code(error))
                self._stream, self._shown = None, ""
        return await self._start(text, chunks)

    async def _start(self, text: str, chunks: list[dict[str, Any]]) -> bool:
        if not self._gate.open():
            self._fall_back()
            return False
        target = self._transport.target
        stream = await self._transport.client.chat_stream(
            channel=target.channel,
            thread_ts=target.thread_ts,
            recipient_team_id=None if target.is_dm else target.user_team,
            recipient_user_id=None if target.is_dm else target.user,
            task_display_mode="timeline",
            buffer_size=1,  # pacing is ours, by time; the helper sends whatever we hand it
        )
        try:
            self.calls += 1
            await stream.append(chunks=chunks)
        except SlackApiError as error:
            log.info("could not start a stream (%s); posting and editing instead", error_code(error))
            self._gate.refused(error)
            self._fall_back()
            return False
        self._stream, self._shown, self._started_at = stream, text, self._clock()
        return True

    def _fall_back(self) -> None:
        self.fallback = self._make_fallback()

    async def _end_message(self) -> str:
        """Stop the current stream message; return the text the next one must start with (a reopened
        code fence, if this one ended inside a code block)."""
        fence = open_fence(self._shown)
        stream, self._stream = self._stream, None
        self._shown = ""
        if stream is not None:
            closing = [{"type": "markdown_text", "text": "\n```"}] if fence is not None else None
            await self._stop(stream, closing)
        return fence + "\n" if fence is not None else ""

    async def _stop(
        self,
        stream: AsyncChatStream,
        chunks: list[dict[str, Any]] | None = None,
        blocks: list[dict[str, Any]] | None = None,
    ) -> bool:
        try:
            self.calls += 1
            await stream.stop(chunks=chunks, blocks=blocks)
        except SlackApiError as error:  # already expired: its text is all there, nothing is lost
            log.info("stream stop failed (%s)", error_code(error))
            return False
        return True

    async def _stop_with_tail(self, blocks: list[dict[str, Any]] | None) -> bool:
        """End the reply with one call: the text not yet shown (and `blocks`) ride on chat.stopStream.
        False when that is not possible (no stream, too long, stream gone); the caller then flushes the
        usual way."""
        stream, tail = self._stream, self._pending
        room = MAX_STREAM_CHARS - len(self._shown)
        if self.fallback is not None or stream is None or len(tail) > room:
            return False
        if self._clock() - self._started_at > self._rollover:
            return False
        chunks = [{"type": "markdown_text", "text": defuse_mass_mentions(tail)}] if tail.strip() else None
        try:
            self.calls += 1
            await stream.stop(chunks=chunks, blocks=blocks)
        except SlackApiError as error:
            log.info("stream stop failed (%s); sending the rest anew", error_code(error))
            self._stream, self._shown = None, ""
            return False
        self._stream, self._shown, self._pending = None, "", ""
        return True

    async def _stop_pacer(self) -> None:
        if self._pacer is None:
            return
        # Holding the lock, the pacer is not inside a call (a 429 retry may be sleeping there): cancelling
        # it now cannot cut a request in half.
        async with self._lock:
            self._pacer.cancel()
            await asyncio.gather(self._pacer, return_exceptions=True)
            self._pacer = None

    async def finish(self, blocks: list[dict[str, Any]] | None = None) -> bool:
        """Deliver the rest and end the reply; True if `blocks` (a footer) went under the last stream
        message, False if the caller must show them some other way."""
        await self._stop_pacer()
        if await self._stop_with_tail(blocks):
            return blocks is not None
        if self._pending.strip():
            await self._flush()
        if self.fallback is not None:
            if self._pending.strip():
                await self.fallback.text(self._pending)
            self._pending = ""
            await self.fallback.finish()
            return False
        if self._stream is not None:
            stream, fence = self._stream, open_fence(self._shown)
            self._stream, self._shown = None, ""
            closing = [{"type": "markdown_text", "text": "\n```"}] if fence is not None else None
            return await self._stop(stream, closing, blocks) and blocks is not None
        return False

    async def fail(self, message: str) -> None:
        await self.finish()
        if self.fallback is not None:
            await self.fallback.fail(message)
            return
        self.calls += 1
        await self._transport.post_context(failure_line(message))

    @property
    def total_calls(self) -> int:
        return self.calls + (self.fallback.calls if self.fallback is not None else 0)
