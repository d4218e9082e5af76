"""A reply by post + throttled chat.update, for where native streaming is off or unavailable.

The core's EditStreamer does the pacing and splitting; this module supplies Slack's post/edit and puts
tool calls between text segments as compact context lines (one per call, updated when it finishes).
"""

from __future__ import annotations

from adapters.slack.format import failure_line, tool_finished_line, tool_started_line
from adapters.slack.inbound import defuse_mass_mentions
from adapters.slack.target import Transport
from core.events import ToolFinished, ToolStarted
from core.render import Capabilities, EditStreamer

PLACEHOLDER = "…"


class _Sink:
    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    async def post(self, text: str) -> str:
        return await self._transport.post_markdown(defuse_mass_mentions(text))

    async def edit(self, message_id: str, text: str) -> None:
        await self._transport.update_markdown(message_id, defuse_mass_mentions(text))


class PostWriter:
    def __init__(self, transport: Transport, capabilities: Capabilities) -> None:
        self._transport = transport
        self._caps = capabilities
        self._segment: EditStreamer | None = None
        self._segment_text = ""
        self._tools: dict[str, tuple[str, ToolStarted]] = {}
        self.calls = 0

    async def placeholder(self) -> None:
        """A short placeholder, where no thread status is available to show the bot is on it."""
        if self._segment is None:
            self._segment = self._new_segment()
            await self._segment.start()

    def _new_segment(self) -> EditStreamer:
        return EditStreamer(_Sink(self._transport), self._caps, placeholder=PLACEHOLDER)

    async def text(self, delta: str) -> None:
        if not self._segment_text:
            delta = delta.lstrip()  # a message cannot start blank (the core separates steps by newlines)
            if not delta:
                return
        if self._segment is None:
            self._segment = self._new_segment()
        self._segment_text += delta
        self._segment.append(delta)

    async def _close_segment(self) -> None:
        if self._segment is not None and self._segment_text:
            await self._segment.finish()
            self.calls += self._segment.calls
            self._segment, self._segment_text = None, ""

    async def tool_started(self, event: ToolStarted) -> None:
        await self._close_segment()  # the tool line goes after the text so far, keeping the order
        self.calls += 1
        ts = await self._transport.post_context(tool_started_line(event))
        self._tools[event.call_id] = (ts, event)

    async def tool_finished(self, event: ToolFinished) -> None:
        ts, started = self._tools.pop(event.call_id, ("", None))
        self.calls += 1
        line = tool_finished_line(started, event)
        if ts:
            await self._transport.update_context(ts, line)
        else:
            await self._transport.post_context(line)

    async def finish(self) -> None:
        await self._close_segment()

    async def fail(self, message: str) -> None:
        """Keep what was written, then say what went wrong; an unused placeholder carries the message."""
        if self._segment is not None and not self._segment_text:
            await self._segment.finish(f"⚠️ {message}")
            self.calls += self._segment.calls
            self._segment = None
            return
        await self._close_segment()
        self.calls += 1
        await self._transport.post_context(failure_line(message))
