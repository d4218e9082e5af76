"""Render one inbound message's events in a Telegram chat: typing, live text, tool lines, final text.

The answer streams through the core's EditStreamer (drafts or edits, see sink.py). Tool calls and
notices appear as one transient status line under the text, so they never add messages to the chat;
the final message is exactly the model's text.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Literal

from telegram.error import RetryAfter, TelegramError

from adapters.telegram.format import footer_markdown
from adapters.telegram.limiter import retry_seconds, with_retries
from adapters.telegram.outbox import SPLIT_CHARS, Outbox
from adapters.telegram.sink import DraftSupport, StreamSink
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
from core.textsplit import split_text

log = logging.getLogger(__name__)

StreamStyle = Literal["draft", "edit", "off"]
TYPING_EVERY_S = 4.0  # Telegram shows "typing" for up to 5 s
TYPING_GRACE_S = 0.3  # a pause shorter than this shows no typing: one API call saved per quick answer
_SHOWN_TOOLS = 3
_LASTING_NOTICES = ("step_limit", "interrupted")  # kept under the final text; others are transient
EMPTY_ANSWER = "(The model returned an empty answer.)"


class Typing:
    """Keeps "typing…" visible while `on`: the model is thinking or a tool is running."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self._active = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.calls = 0

    def on(self) -> None:
        self._active.set()
        if self._task is None:
            self._task = asyncio.create_task(self._loop())

    def off(self) -> None:
        self._active.clear()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            await self._active.wait()
            await asyncio.sleep(TYPING_GRACE_S)
            if not self._active.is_set():
                continue
            try:
                self.calls += 1
                await self._outbox.typing()
            except RetryAfter as error:
                await asyncio.sleep(retry_seconds(error))
            except TelegramError as error:  # cosmetic: never let it disturb the answer
                log.debug("typing action failed: %s", error.message)
            await asyncio.sleep(TYPING_EVERY_S - TYPING_GRACE_S)


def _argument_summary(arguments: dict[str, object], limit: int = 60) -> str:
    text = ", ".join(f"{key}={value}" for key, value in list(arguments.items())[:2])
    text = " ".join(text.split()).replace("`", "'")
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ToolLines:
    """Compact tool status: `⚙️ calculator(expression=6*7) …` then `✅ … 0.4s`; the last few only."""

    def __init__(self) -> None:
        self._lines: dict[str, str] = {}

    def started(self, event: ToolStarted) -> str:
        self._lines[event.call_id] = f"⚙️ `{event.name}({_argument_summary(event.arguments)})` …"
        return self.render()

    def finished(self, event: ToolFinished) -> str:
        mark = "❌" if event.is_error else "✅"
        started = self._lines.get(event.call_id, f"⚙️ `{event.name}()` …")
        call = started.removeprefix("⚙️ ").removesuffix(" …")
        self._lines[event.call_id] = f"{mark} {call} {event.duration_s:.1f}s"
        return self.render()

    def render(self) -> str:
        lines = list(self._lines.values())
        hidden = len(lines) - _SHOWN_TOOLS
        shown = lines[-_SHOWN_TOOLS:]
        return "\n".join(([f"… and {hidden} earlier tool calls"] if hidden > 0 else []) + shown)


def final_text(event: TurnDone | TurnFailed) -> str:
    if isinstance(event, TurnDone):
        return event.text if event.text.strip() else EMPTY_ANSWER
    mark = "⏹" if event.reason == "cancelled" else "⚠️"
    note = f"{mark} {event.message}"
    return f"{event.partial_text}\n\n{note}" if event.partial_text.strip() else note


class TurnRenderer:
    def __init__(
        self,
        outbox: Outbox,
        style: StreamStyle,
        capabilities: Capabilities,
        drafts: DraftSupport,
        busy: Callable[[], bool] | None = None,
    ) -> None:
        use_drafts = style == "draft" and outbox.target.private and drafts.available
        self.sink = StreamSink(outbox, drafts if use_drafts else None, busy)
        self._outbox = outbox
        self._drafts = use_drafts
        self.typing = Typing(outbox)
        self._tools = ToolLines()
        self._closing_notes: list[str] = []
        self._streamer = EditStreamer(self.sink, capabilities)
        self._streaming = style != "off"

    async def render(self, events: AsyncIterator[AgentEvent], *, thinking: bool) -> None:
        if thinking:
            self.typing.on()
        try:
            async for event in events:
                if await self._on_event(event):
                    return
        finally:
            await self.typing.close()
            await self._streamer.stop()
            close = getattr(events, "aclose", None)
            if close is not None:
                await close()

    async def _on_event(self, event: AgentEvent) -> bool:
        """Render one event; True once the turn is over."""
        if isinstance(event, TextDelta):
            self.typing.off()
            self._streamer.append(event.text)
        elif isinstance(event, ToolStarted):
            self.typing.on()
            self._status(self._tools.started(event))
        elif isinstance(event, ToolFinished):
            self._status(self._tools.finished(event))
        elif isinstance(event, Notice):
            if event.kind in _LASTING_NOTICES:
                self._closing_notes.append(f"ℹ️ _{event.text}_")
            self._status(f"ℹ️ _{event.text}_")
        elif isinstance(event, CommandReply | Refused):
            self.typing.off()
            await self.send_standalone(event.text)
            return True
        elif isinstance(event, TurnDone | TurnFailed):
            self.typing.off()
            footer = footer_markdown(event.footer) if isinstance(event, TurnDone) else ""
            closing = [*self._closing_notes, footer] if footer else self._closing_notes
            await self._finish("\n\n".join([final_text(event), *closing]))
            return True
        return False

    def _status(self, status: str) -> None:
        if self._streaming:
            self._streamer.set_status(status)

    async def _finish(self, text: str) -> None:
        if self._drafts:
            await self._streamer.stop()
            await self.sink.finalize(split_text(text, SPLIT_CHARS))
        else:
            await self._streamer.finish(text)

    async def send_standalone(self, text: str) -> None:
        for part in split_text(text, SPLIT_CHARS):
            self.sink.calls += 1
            await with_retries(partial(self._outbox.send, part))
