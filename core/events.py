"""Typed events a turn streams to whoever renders it (an adapter, the console, a test).

The whole contract between the core and a renderer: grow this list rather than adding keyword
arguments to adapter methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class TextReset:
    """A model step's stream was cut and the step is being tried again from its start: the answer shown
    so far is now exactly `text` (what came before that step); the retried step's text follows as new
    `TextDelta`s. Renderers replace what they show (an edit), so the final answer never repeats words."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolStarted:
    call_id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolFinished:
    call_id: str
    name: str
    output: str
    is_error: bool
    duration_s: float


@dataclass(frozen=True, slots=True)
class UsageReport:
    """Usage of one provider call within the turn."""

    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float | None  # None: the model's price is unknown


@dataclass(frozen=True, slots=True)
class ApprovalRequested:
    """A tool call waits for a person to approve it (stored as choice `choice_id`). The presenter shows
    a card with Approve / Deny / Always allow here; `message_id`: the card an earlier attempt at this
    turn already showed (a turn resumed after a restart): edited, not posted again."""

    choice_id: int
    call_id: str
    tool: str
    arguments: dict[str, Any]
    prompt: str  # the card's Markdown: what wants to run, with what, for whom, until when
    expires_at: datetime
    message_id: str = ""


@dataclass(frozen=True, slots=True)
class ApprovalResolved:
    """The card of choice `choice_id` now shows `text` (no buttons): expired, stopped, or the outcome of
    the approved call."""

    choice_id: int
    text: str


NoticeKind = Literal["retrying", "fallback", "compacted", "queued", "step_limit", "interrupted", "cut"]


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the user should know that is not part of the answer (retry, fallback, compaction)."""

    kind: NoticeKind
    text: str


@dataclass(frozen=True, slots=True)
class CommandReply:
    """The answer to a command; `private` asks the adapter to show it only to the caller."""

    text: str
    private: bool = False


@dataclass(frozen=True, slots=True)
class Refused:
    """The access policy or a budget said no; no provider call was made."""

    text: str


@dataclass(frozen=True, slots=True)
class TurnDone:
    text: str  # the full final answer text of the turn (all steps)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0
    # A short line to show under the answer (tokens and cost of the turn) when BOT_COST_FOOTER is on;
    # "" otherwise. Adapters render it small (a context line, subtext), never inside the answer text.
    footer: str = ""


# "suspended": the bot shut down while the turn waited for an approval; it carries on after the restart.
FailureReason = Literal["cancelled", "suspended", "provider_error", "internal_error"]


@dataclass(frozen=True, slots=True)
class TurnFailed:
    reason: FailureReason
    message: str  # safe to show to the user: no secrets, no tracebacks
    partial_text: str = ""


AgentEvent = (
    TextDelta
    | TextReset
    | ToolStarted
    | ToolFinished
    | ApprovalRequested
    | ApprovalResolved
    | UsageReport
    | Notice
    | CommandReply
    | Refused
    | TurnDone
    | TurnFailed
)

TERMINAL_EVENTS = (TurnDone, TurnFailed, CommandReply, Refused)
