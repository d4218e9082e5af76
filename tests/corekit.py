"""Small helpers for driving the wired core in tests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from bot.logs import SAY_LOGGER
from core.actions import Buttons
from core.events import AgentEvent, TextDelta, ToolFinished, ToolStarted, TurnDone
from core.inbound import ConversationRef, InboundMessage, Sender
from core.router import Router
from core.storage import TurnRecord, open_store
from core.surface import AnswerStream, Capabilities, Note

REF = ConversationRef("console", "local", "alice")


@dataclass
class RecordingObserver:
    """A `core.adapter.PlatformObserver` that remembers what the adapter reported."""

    rate_limits: list[tuple[str, str | None]] = field(default_factory=list)  # (platform, method)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (platform, kind)

    def rate_limited(self, platform: str, method: str | None) -> None:
        self.rate_limits.append((platform, method))

    def platform_error(self, platform: str, kind: str) -> None:
        self.errors.append((platform, kind))

    def methods(self) -> Counter[str | None]:
        return Counter(method for _, method in self.rate_limits)


def message(
    text: str,
    *,
    user: str = "alice",
    ref: ConversationRef = REF,
    event_id: str | None = None,
    is_dm: bool = True,
    is_bot: bool = False,
) -> InboundMessage:
    return InboundMessage(
        ref, Sender(user, user, is_bot=is_bot), text, event_id or uuid.uuid4().hex, is_dm=is_dm
    )


async def collect(router: Router, text: str, **kwargs: Any) -> list[AgentEvent]:
    return [event async for event in router.handle(message(text, **kwargs))]


async def eventually(condition: Callable[[], Any], guard_s: float = 30.0) -> None:
    """Poll `condition` until it holds; `guard_s` only stops a hung test (it is no assert on speed)."""
    for _ in range(max(1, int(guard_s / 0.01))):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"condition not met within {guard_s}s")


def streamed_text(events: list[AgentEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def done(events: list[AgentEvent]) -> TurnDone:
    last = events[-1]
    assert isinstance(last, TurnDone), events
    return last


def of_type(events: list[AgentEvent], kind: type[Any]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


async def leftover_turns(database_url: str) -> list[TurnRecord]:
    """Unfinished turns as a process starting now would find them (a store opened on the side)."""
    store = open_store(database_url)
    await store.open()
    try:
        return await store.unfinished_turns()
    finally:
        await store.close()


@dataclass
class RecordingSurface:
    """An in-memory `core.surface.Surface` (the core tier's adapter): messages by id, and every call.
    `fail` maps a primitive's name to errors to raise on its next calls (a platform misbehaving)."""

    capabilities: Capabilities = field(
        default_factory=lambda: Capabilities(max_message_chars=200, edit_interval_s=0.01)
    )
    messages: dict[str, str] = field(default_factory=dict)
    buttons: dict[str, Buttons | None] = field(default_factory=dict)  # what each message shows
    private_replies: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    fail: dict[str, list[Exception]] = field(default_factory=dict)
    backlog: bool = False  # what `backlogged` answers (an adapter's own rate limiter queueing calls)
    _ids: int = 0

    def _call(self, name: str) -> None:
        self.calls.append(name)
        errors = self.fail.get(name)
        if errors:
            raise errors.pop(0)

    def texts(self) -> list[str]:
        return list(self.messages.values())

    async def post(self, text: str, buttons: Buttons | None = None) -> str:
        self._call("post")
        self._ids += 1
        self.messages[str(self._ids)] = text
        self.buttons[str(self._ids)] = buttons
        return str(self._ids)

    async def edit(self, message_id: str, text: str, buttons: Buttons | None = None) -> None:
        self._call("edit")
        self.messages[message_id] = text
        self.buttons[message_id] = buttons

    async def delete(self, message_id: str) -> None:
        self._call("delete")
        self.messages.pop(message_id, None)

    async def private(self, text: str) -> None:
        self._call("private")
        self.private_replies.append(text)

    def note(self, note: Note) -> str:
        return f"({note.kind}: {note.text})"

    async def typing(self) -> None:
        self._call("typing")

    async def set_status(self, text: str) -> None:
        self._call("set_status")

    async def post_tool(self, event: ToolStarted) -> str:
        self._call("post_tool")
        return await self.post(f"[tool {event.name}]")

    async def edit_tool(self, message_id: str, started: ToolStarted, event: ToolFinished) -> None:
        self._call("edit_tool")
        self.messages[message_id] = f"[tool {event.name} done]"

    async def open_stream(self) -> AnswerStream | None:
        return None

    def backlogged(self) -> bool:
        return self.backlog


@contextlib.contextmanager
def restored_logging() -> Iterator[None]:
    """`setup_logging` rewires the root logger, hooks and warnings: put them back for the next test."""
    root, speaker = logging.getLogger(), logging.getLogger(SAY_LOGGER)
    saved = (root.handlers[:], root.level, speaker.handlers[:], speaker.propagate)
    hooks = (sys.excepthook, threading.excepthook)
    try:
        yield
    finally:
        root.handlers[:], speaker.handlers[:] = saved[0], saved[2]
        root.setLevel(saved[1])
        speaker.propagate = saved[3]
        sys.excepthook, threading.excepthook = hooks
        logging.captureWarnings(False)
