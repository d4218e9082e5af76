"""Render one turn's event stream on a surface: streamed answer, tool embeds, typing, failures.

The answer streams through the core's EditStreamer (post once, then time-paced edits per message,
continuing in new messages past 2,000 characters); this module only maps events onto the surface.
A failed REST call is logged and the stream goes on: the final sync decides what the user sees.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import discord

from adapters.discord.format import ToolState, tool_embed
from adapters.discord.report import with_footer
from adapters.discord.surfaces import Surface
from core.events import (
    AgentEvent,
    CommandReply,
    Notice,
    Refused,
    TextDelta,
    ToolFinished,
    ToolStarted,
    TurnDone,
    TurnFailed,
)
from core.render import Capabilities, EditStreamer

log = logging.getLogger(__name__)
T = TypeVar("T")

TYPING_REFRESH_S = 8.0  # Discord shows typing for 10 s; refresh a little before it lapses
NO_TEXT = "-# (The answer had no text.)"


class Typing:
    """The typing indicator while the model thinks or a tool runs; off while text is streaming."""

    def __init__(self, surface: Surface) -> None:
        self._surface = surface
        self._task: asyncio.Task[None] | None = None
        self._broken = False

    def on(self) -> None:
        if self._broken or (self._task is not None and not self._task.done()):
            return
        self._task = asyncio.create_task(self._loop())

    def off(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self._surface.typing()
            except discord.HTTPException as error:  # e.g. no access to the channel: stop trying
                log.info("typing indicator unavailable (%s)", error.status)
                self._broken = True
                return
            await asyncio.sleep(TYPING_REFRESH_S)


@dataclass
class TurnStats:
    """What the renderer did, for logs and benchmarks."""

    calls: int = 0
    final_text: str = ""
    tools: int = 0
    failed: bool = False
    events: int = 0  # events the core yielded (0: it dropped the message as a duplicate)


class TurnRenderer:
    def __init__(
        self,
        surface: Surface,
        capabilities: Capabilities,
        *,
        typing: bool = True,
        on_failed_reply: Callable[[], None] | None = None,
    ) -> None:
        self._surface = surface
        self._on_failed_reply = on_failed_reply
        self._streamer = EditStreamer(surface, capabilities)
        self._typing = Typing(surface)
        self._tools: dict[str, str] = {}  # call id -> embed message id
        self._arguments: dict[str, dict[str, object]] = {}
        self.stats = TurnStats()
        if typing:
            self._typing.on()

    async def render(self, events: AsyncIterator[AgentEvent]) -> TurnStats:
        try:
            async for event in events:
                self.stats.events += 1
                await self._on(event)
        finally:
            self._typing.off()
            self.stats.calls += self._streamer.calls
        return self.stats

    async def _on(self, event: AgentEvent) -> None:
        if isinstance(event, TextDelta):
            self._typing.off()
            self._streamer.append(event.text)
        elif isinstance(event, ToolStarted):
            self._typing.on()
            await self._tool_started(event)
        elif isinstance(event, ToolFinished):
            await self._tool_finished(event)
        elif isinstance(event, Notice):
            await self._quietly(self._surface.notice(event.text))
        elif isinstance(event, CommandReply) and not event.private:
            await self._finish(event.text)
        elif isinstance(event, Refused | CommandReply):
            await self._quietly(self._surface.private(event.text))
        elif isinstance(event, TurnDone):
            await self._finish(with_footer(event.text or NO_TEXT, event.footer))
        elif isinstance(event, TurnFailed):
            self.stats.failed = True
            mark = "⏹" if event.reason == "cancelled" else "⚠️"
            note = f"-# {mark} {event.message}"
            await self._finish(
                f"{event.partial_text.rstrip()}\n\n{note}" if event.partial_text.strip() else note
            )

    async def _finish(self, text: str) -> None:
        self._typing.off()
        self.stats.final_text = text
        try:
            await self._streamer.finish(text)
        except discord.HTTPException:
            if self._on_failed_reply is not None:
                self._on_failed_reply()
            log.exception("could not show the final answer")

    async def _tool_started(self, event: ToolStarted) -> None:
        self.stats.tools += 1
        self._arguments[event.call_id] = event.arguments
        embed = tool_embed(event.name, event.arguments, "running")
        message_id = await self._quietly(self._surface.post_embed(embed))
        if message_id is not None:
            self._tools[event.call_id] = message_id

    async def _tool_finished(self, event: ToolFinished) -> None:
        state: ToolState = "error" if event.is_error else "ok"
        arguments = self._arguments.pop(event.call_id, {})
        embed = tool_embed(event.name, arguments, state, duration_s=event.duration_s, output=event.output)
        message_id = self._tools.pop(event.call_id, None)
        if message_id is None:
            await self._quietly(self._surface.post_embed(embed))
        else:
            await self._quietly(self._surface.edit_embed(message_id, embed))

    async def _quietly(self, call: Awaitable[T]) -> T | None:
        """Await a side message (tool embed, notice); its failure must not stop the answer."""
        self.stats.calls += 1
        try:
            return await call
        except discord.HTTPException as error:
            log.warning("a side message could not be posted: %s %s", error.status, error.text)
            return None
