"""An answer streamed with Slack's native methods (chat.startStream / appendStream / stopStream).

The core's presenter paces it (core/present.py) and hands it the whole answer so far; this class only
makes Slack show that text: it appends what is new, puts tool calls in as task updates, and continues
in a fresh stream message when one would grow past the Markdown limit or nears Slack's ~5-minute
streaming window (closing and reopening a code fence across the cut). The last of the text rides on
chat.stopStream together with the notes, the cost footer as a context block under the message and
the answer's buttons (adapters/slack/buttons.py) under that.

It remembers what each of its messages shows, so a failed call is simply made again. When the text
shown is no longer a prefix of the answer (a model step restarted) or a call may have landed without
saying so (a timeout), the message is stopped and rewritten with chat.update, and the answer continues
in a new one. When no stream can be started (a 429 on chat.startStream, streaming unsupported) it
raises `StreamClosed` and the presenter posts and edits the rest.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from slack_sdk.web.async_chat_stream import AsyncChatStream
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.buttons import button_blocks
from adapters.slack.client import FAILURES, SlackDeliveryError, call, delivery_error
from adapters.slack.format import note_markdown, task_finished_chunk, task_started_chunk
from adapters.slack.inbound import defuse_mass_mentions
from adapters.slack.report import footer_blocks
from adapters.slack.streamkit import StreamGate, common_prefix, cut_point, open_fence
from adapters.slack.target import ReplyTarget
from core.actions import Buttons
from core.events import ToolFinished, ToolStarted
from core.surface import Note, StreamClosed

log = logging.getLogger(__name__)

MAX_STREAM_CHARS = 12_000  # markdown_text limit; also where one stream message ends
FENCE_ROOM = 8  # kept free in a stream message to close a code fence
EXPIRED = "message_not_in_streaming_state"


def _markdown(text: str) -> dict[str, Any]:
    return {"type": "markdown_text", "text": defuse_mass_mentions(text)}


@dataclass
class _Part:
    """One stream message: the answer text from `start` to `end` (after a reopened fence, `lead`)."""

    stream: AsyncChatStream | None  # None once stopped (or expired)
    start: int
    end: int
    ts: str = ""
    lead: str = ""
    started_at: float = 0.0
    full: bool = False  # cut at the size limit: the answer continues in the next message
    uncertain: bool = False  # a call failed in a way that may have landed: rewrite it before going on


class SlackStream:
    """One answer as native stream messages in a thread (core.surface.AnswerStream)."""

    def __init__(
        self,
        client: AsyncWebClient,
        target: ReplyTarget,
        gate: StreamGate,
        *,
        rollover_s: float,
        clock: Callable[[], float],
    ) -> None:
        self._client = client
        self._target = target
        self._gate = gate
        self._rollover = rollover_s
        self._clock = clock
        self._shown = ""  # the answer text the stream messages show, for good
        self._parts: list[_Part] = []
        self._lead = ""  # what the next message must start with (a reopened code fence)
        self._closed = False  # StreamClosed was raised: the presenter posts the rest
        self._finished = False
        self._lock = asyncio.Lock()  # one call at a time, whoever makes them
        self.calls = 0

    # --- the AnswerStream protocol -----------------------------------------------------------------

    @property
    def message_ids(self) -> list[str]:
        return [part.ts for part in self._parts if part.ts]

    async def show(self, text: str, status: str) -> None:
        # `status` (a transient line) has no place in an append-only stream; the thread status and the
        # final text carry what matters.
        async with self._lock:
            await self._show(text)

    async def tool_started(self, event: ToolStarted) -> bool:
        async with self._lock:
            return await self._tool(task_started_chunk(event))

    async def tool_finished(self, event: ToolFinished) -> bool:
        async with self._lock:
            return await self._tool(task_finished_chunk(event))

    async def finish(self, text: str, notes: Sequence[Note], buttons: Buttons | None = None) -> None:
        async with self._lock:
            await self._finish(text, notes, buttons)

    # --- the same, one at a time -------------------------------------------------------------------

    async def _show(self, text: str) -> None:
        if self._finished:
            return
        if self._closed:
            raise StreamClosed(self._shown)
        await self._repair(text)
        await self._push(text)

    async def _tool(self, chunk: dict[str, Any]) -> bool:
        if self._closed or self._finished:
            return False
        while True:
            part = self._open_part()
            if part is not None and (part.full or self._stale(part)):
                await self._end_part(part)
                continue
            if part is None:
                try:
                    await self._start("", chunk)
                except StreamClosed:
                    return False
                return True
            if await self._append(part, "", chunk):
                return True

    async def _finish(self, text: str, notes: Sequence[Note], buttons: Buttons | None) -> None:
        if self._finished:
            return
        small = "".join("\n\n" + note_markdown(n) for n in notes if n.kind != "footer")
        footer = "\n".join(n.text for n in notes if n.kind == "footer" and n.text.strip())
        # Appended under the streamed text by chat.stopStream: the cost footer, then the buttons.
        blocks = (footer_blocks(footer) if footer else []) + button_blocks(buttons)
        if self._closed:
            await self._repair(text)
            if text[len(self._shown) :].strip() or small or blocks:
                raise StreamClosed(self._shown)
            self._finished = True
            return
        await self._repair(text)
        while True:
            part = self._open_part()
            if part is not None and self._stale(part):
                await self._end_part(part)
                continue
            rest = text[len(self._shown) :]
            if part is not None and not part.full:
                final = self._closing(part, rest) + small
                if len(final) <= MAX_STREAM_CHARS - self._length(part):
                    if await self._stop(part, rest, final, blocks or None):
                        self._finished = True
                        return
                    continue  # it had expired: the rest goes into a new message
            if rest.strip():
                await self._push(text)
                continue
            # All of the text is shown, but there is no message left to put the notes (or buttons) under.
            if part is not None:
                await self._end_part(part)
            if small or blocks:
                self._closed = True
                raise StreamClosed(self._shown)
            self._finished = True
            return

    # --- showing more ------------------------------------------------------------------------------

    def _open_part(self) -> _Part | None:
        part = self._parts[-1] if self._parts else None
        return part if part is not None and part.stream is not None else None

    def _stale(self, part: _Part) -> bool:
        return self._clock() - part.started_at > self._rollover

    def _length(self, part: _Part) -> int:
        return len(part.lead) + part.end - part.start

    def _closing(self, part: _Part, rest: str) -> str:
        """`rest` with a code fence closed if the message would end inside one."""
        fence = open_fence(part.lead + self._shown[part.start : part.end] + rest)
        return rest + ("\n```" if fence is not None else "")

    async def _push(self, text: str) -> None:
        """Show all of `text` (what is shown is a prefix of it), in as many messages as it takes."""
        while len(self._shown) < len(text):
            rest = text[len(self._shown) :]
            part = self._open_part()
            if part is not None and (part.full or self._stale(part)):
                await self._end_part(part)
                continue
            if part is None:
                if not rest.strip():
                    return  # a message cannot start blank: wait for words
                await self._start(rest)
                continue
            room = MAX_STREAM_CHARS - self._length(part) - FENCE_ROOM
            if room <= 0:
                part.full = True
                continue
            if len(rest) > room:
                await self._append(part, rest[: cut_point(rest, room)], full=True)
            else:
                await self._append(part, rest)

    async def _start(self, rest: str, chunk: dict[str, Any] | None = None) -> None:
        """Start a stream message with the head of `rest` (and `chunk`); StreamClosed if none can be."""
        if not self._gate.open():
            self._closed = True
            raise StreamClosed(self._shown)
        target = self._target
        room = MAX_STREAM_CHARS - len(self._lead) - FENCE_ROOM
        head = rest[: cut_point(rest, room)] if len(rest) > room else rest
        opening = self._lead + head
        chunks = [_markdown(opening)] if opening else []
        if chunk is not None:
            chunks.append(chunk)
        stream = await self._client.chat_stream(
            channel=target.channel,
            thread_ts=target.thread_ts,
            recipient_team_id=None if target.is_dm else target.user_team,
            recipient_user_id=None if target.is_dm else target.user,
            task_display_mode="timeline",
            buffer_size=1,  # pacing is the presenter's; the helper sends whatever it is handed
        )
        try:
            self.calls += 1
            await stream.append(chunks=chunks)
        except FAILURES as failure:
            error = delivery_error("chat.startStream", failure)
            if error.transient and error.status != 429:
                raise error from failure  # a timeout or 5xx: try again with the next update
            log.info("could not start a stream (%s); posting and editing instead", error)
            self._gate.refused(error)
            self._closed = True
            raise StreamClosed(self._shown) from failure
        start = len(self._shown)
        self._shown += head
        lead, self._lead = self._lead, ""
        part = _Part(stream, start, len(self._shown), str(stream.ts or ""), lead, self._clock())
        part.full = len(head) < len(rest)
        self._parts.append(part)

    async def _append(
        self, part: _Part, head: str, chunk: dict[str, Any] | None = None, *, full: bool = False
    ) -> bool:
        """Append `head` (and `chunk`) to the open message; False if it had expired (it is closed, and
        the caller continues in a new one)."""
        assert part.stream is not None
        chunks = [_markdown(head)] if head else []
        if chunk is not None:
            chunks.append(chunk)
        try:
            self.calls += 1
            await part.stream.append(chunks=chunks)
        except FAILURES as failure:
            error = delivery_error("chat.appendStream", failure)
            if error.code == EXPIRED or not error.transient:
                log.info("stream append failed (%s); continuing in a new message", error)
                self._gone(part)
                return False
            if error.status != 429:
                part.uncertain = True  # it may have landed: rewrite the message before going on
            raise error from failure
        self._shown += head
        part.end = len(self._shown)
        part.full = full
        return True

    async def _end_part(self, part: _Part) -> None:
        """Stop the open message (closing a code fence it ends in); the next one reopens the fence."""
        assert part.stream is not None
        fence = open_fence(part.lead + self._shown[part.start : part.end])
        closing = [_markdown("\n```")] if fence is not None else None
        try:
            self.calls += 1
            await part.stream.stop(chunks=closing)
        except FAILURES as failure:
            error = delivery_error("chat.stopStream", failure)
            if error.transient and error.code != EXPIRED:
                if error.status != 429:
                    part.uncertain = True
                raise error from failure
            log.info("stream stop failed (%s); its text is all there", error)
        part.stream = None
        self._lead = self._reopening(part)

    async def _stop(self, part: _Part, rest: str, final: str, blocks: list[dict[str, Any]] | None) -> bool:
        """End the answer: `final` (`rest` of the text, and the notes) and `blocks` ride on
        chat.stopStream. False if the message had expired (the rest must go into a new one)."""
        assert part.stream is not None
        try:
            self.calls += 1
            await part.stream.stop(chunks=[_markdown(final)] if final.strip() else None, blocks=blocks)
        except FAILURES as failure:
            error = delivery_error("chat.stopStream", failure)
            if error.code == EXPIRED:
                log.info("the stream expired before it was stopped; the rest goes into a new message")
                self._gone(part)
                return False
            if error.transient and error.status != 429:
                part.uncertain = True
            raise error from failure
        part.stream = None
        self._shown += rest
        part.end = len(self._shown)
        return True

    def _gone(self, part: _Part) -> None:
        """The message left streaming state on Slack's side: what it shows stays; go on in a new one."""
        part.stream = None
        self._lead = self._reopening(part)

    def _reopening(self, part: _Part) -> str:
        """What the message after `part` starts with: the code fence `part` ends in, reopened."""
        fence = open_fence(part.lead + self._shown[part.start : part.end])
        return fence + "\n" if fence is not None else ""

    # --- putting it right --------------------------------------------------------------------------

    async def _repair(self, text: str) -> None:
        """Make what the messages show a prefix of `text` again: after a restarted model step (the text
        got shorter or changed) or a call that may have landed. Messages past the common prefix are
        deleted; the one it ends in is stopped and rewritten; the answer continues in a new message."""
        keep = common_prefix(self._shown, text)
        uncertain = bool(self._parts) and self._parts[-1].uncertain
        if keep == len(self._shown) and not uncertain:
            return
        while self._parts and self._parts[-1].start >= keep and keep < len(self._shown):
            part = self._parts[-1]
            await self._delete(part)
            self._parts.pop()
        if self._parts:
            part = self._parts[-1]
            if keep < part.end:
                keep = self._word_boundary(text, part, keep)
            if keep < part.end or part.uncertain:
                await self._rewrite(part, keep)
            else:
                self._lead = self._reopening(part)
        if not self._parts:
            self._lead = ""
        self._shown = self._shown[:keep]
        log.info("stream messages rewritten to the first %d characters of the answer", keep)

    def _word_boundary(self, text: str, part: _Part, keep: int) -> int:
        """Back off to a break, so the next message does not start in the middle of a word."""
        if keep >= len(text) or text[keep - 1].isspace() or text[keep].isspace():
            return keep
        window = text[part.start : keep]
        at = max(window.rfind(" "), window.rfind("\n"))
        return part.start + at + 1 if at > 0 else keep

    async def _rewrite(self, part: _Part, keep: int) -> None:
        if part.stream is not None:
            try:
                self.calls += 1
                await part.stream.stop()
            except FAILURES as failure:
                error = delivery_error("chat.stopStream", failure)
                if error.transient and error.code != EXPIRED:
                    raise error from failure
            part.stream = None
        body = part.lead + self._shown[part.start : keep]
        if not body.strip():
            await self._delete(part)
            self._parts.pop()
            self._lead = ""
            return
        fence = open_fence(body)
        if fence is not None:
            body += "\n```"
        self.calls += 1
        await call(
            "chat.update",
            self._client.chat_update(
                channel=self._target.channel, ts=part.ts, markdown_text=defuse_mass_mentions(body)
            ),
        )
        part.end, part.uncertain, part.full = keep, False, False
        self._lead = fence + "\n" if fence is not None else ""

    async def _delete(self, part: _Part) -> None:
        self.calls += 1
        try:
            await call("chat.delete", self._client.chat_delete(channel=self._target.channel, ts=part.ts))
        except SlackDeliveryError as error:
            if error.code != "message_not_found":
                raise
