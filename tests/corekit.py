"""Small helpers for driving the wired core in tests."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from core.events import AgentEvent, TextDelta, TurnDone
from core.inbound import ConversationRef, InboundMessage, Sender
from core.router import Router
from core.storage import TurnRecord, open_store

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
