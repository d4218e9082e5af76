"""Render one conversation turn's events into a Slack thread.

The writer is a native stream (default) or post + edit; either way tool calls show up in the thread,
notices go to the thread status, and a failed turn keeps its partial text and says what went wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from adapters.slack.format import (
    escape_mrkdwn,
    notice_line,
    task_finished_chunk,
    task_started_chunk,
)
from adapters.slack.post import PostWriter
from adapters.slack.report import footer_blocks
from adapters.slack.stream import StreamWriter
from adapters.slack.target import Transport
from core.events import AgentEvent, Notice, TextDelta, ToolFinished, ToolStarted, TurnDone, TurnFailed

log = logging.getLogger(__name__)

THINKING = "is thinking…"
EMPTY_ANSWER = "The model returned an empty answer."
_LASTING_NOTICES = ("step_limit", "interrupted")  # worth a line in the thread, not just a status


class TurnRenderer:
    def __init__(self, transport: Transport, writer: StreamWriter | PostWriter) -> None:
        self._transport = transport
        self._writer = writer
        self._status: asyncio.Task[bool] | None = None
        self._notes: list[str] = []
        self._wrote = False

    def begin(self) -> None:
        """Show the thread status at once, without delaying the turn: it is awaited before the first
        visible write, so a late status never lingers under an answer."""
        self._status = asyncio.create_task(self._transport.set_status(THINKING))

    async def clear_status(self) -> None:
        """No answer is coming (a refusal, a command): take the status down rather than let it linger."""
        if self._status is not None:
            self._status.cancel()
            await asyncio.gather(self._status, return_exceptions=True)
            self._status = None
            await self._transport.set_status("")

    async def _status_settled(self) -> None:
        if self._status is None:
            return
        status, self._status = self._status, None
        shown = await status
        if not shown and isinstance(self._writer, PostWriter) and not self._wrote:
            await self._writer.placeholder()

    async def on(self, event: AgentEvent) -> None:
        if isinstance(event, Notice):
            await self._notice(event)
            return
        if not isinstance(event, TextDelta | ToolStarted | ToolFinished | TurnDone | TurnFailed):
            return  # usage reports are the core's business
        await self._status_settled()
        if isinstance(event, TextDelta):
            self._wrote = self._wrote or bool(event.text.strip())
            await self._writer.text(event.text)
        elif isinstance(event, ToolStarted | ToolFinished):
            self._wrote = True
            await self._tool(event)
        elif isinstance(event, TurnDone):
            await self._done(event)
        else:
            await self._writer.fail(event.message)

    async def _tool(self, event: ToolStarted | ToolFinished) -> None:
        writer = self._writer
        if isinstance(writer, StreamWriter):
            chunk = (
                task_started_chunk(event) if isinstance(event, ToolStarted) else task_finished_chunk(event)
            )
            if await writer.chunk(chunk):
                return
            assert writer.fallback is not None
            writer = writer.fallback
        if isinstance(event, ToolStarted):
            await writer.tool_started(event)
        else:
            await writer.tool_finished(event)

    async def _notice(self, event: Notice) -> None:
        if event.kind in _LASTING_NOTICES:
            self._notes.append(event.text)
        elif not self._wrote:  # a status line under the thread; it clears when the answer arrives
            await self._status_settled()
            with contextlib.suppress(Exception):
                await self._transport.set_status(event.text[:100])

    async def _done(self, event: TurnDone) -> None:
        footer = event.footer.strip()
        if isinstance(self._writer, StreamWriter):
            # The footer rides on chat.stopStream, under the answer itself, when the stream allows it.
            shown = await self._writer.finish(footer_blocks(footer) if footer else None)
            footer = "" if shown else footer
        else:
            await self._writer.finish()
        if not event.text.strip() and not self._wrote:
            self._notes.append(EMPTY_ANSWER)
        for note in self._notes:
            await self._transport.post_context(notice_line(note))
        if footer:  # a context line in the thread, after the answer and its notes
            await self._transport.post_context(escape_mrkdwn(footer))

    async def abort(self, message: str) -> None:
        """The renderer itself failed (Slack unreachable, a bug): tell the user if we still can."""
        if self._status is not None:
            self._status.cancel()
        try:
            await self._writer.fail(message)
        except Exception:
            log.warning("could not tell the user about a failed reply", exc_info=True)

    @property
    def calls(self) -> int:
        writer = self._writer
        return writer.total_calls if isinstance(writer, StreamWriter) else writer.calls
