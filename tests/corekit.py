"""Small helpers for driving the wired core in tests."""

from __future__ import annotations

import uuid
from typing import Any

from core.events import AgentEvent, TextDelta, TurnDone
from core.inbound import ConversationRef, InboundMessage, Sender
from core.router import Router

REF = ConversationRef("console", "local", "alice")


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
