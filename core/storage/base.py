"""The store seam. Callers never write SQL; a backend implements `Store`.

SQLite (aiosqlite, WAL) is the embedded default; a PostgreSQL backend can implement the same protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal, Protocol

from core.conversation import Message
from core.inbound import ConversationRef

TurnStatus = Literal["pending", "running", "done", "failed", "cancelled", "interrupted"]


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: int
    ref: ConversationRef
    model: str | None  # provider-qualified model chosen with the `model` command; None = default
    summary: str  # summary of compacted earlier turns ("" if none)
    summary_tokens: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: int
    message: Message
    tokens: int


@dataclass(frozen=True, slots=True)
class TurnRecord:
    """An accepted inbound message: stored before it is processed so a crash never loses it."""

    id: int
    session_id: int
    ref: ConversationRef
    sender_id: str
    text: str
    event_id: str
    status: TurnStatus
    created_at: datetime


@dataclass(frozen=True, slots=True)
class UsageRecord:
    ts: datetime
    provider: str
    model: str
    platform: str
    workspace: str
    channel: str
    user_id: str
    session_id: int | None
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float | None  # None = unknown price, never silently zero
    latency_ms: float
    ok: bool = True
    error: str = ""


@dataclass(frozen=True, slots=True)
class ToolCallRecord:
    ts: datetime
    session_id: int | None
    platform: str
    user_id: str
    tool: str
    ok: bool
    duration_ms: float


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """Usage summed over a period, one row per provider-qualified model."""

    model: str
    calls: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float  # sum of known costs
    unpriced_calls: int  # calls whose cost is unknown


UsageDimension = Literal["platform", "provider", "model", "workspace", "channel", "user_id"]


@dataclass(frozen=True, slots=True)
class UsageGroup:
    """Usage summed over a period for one combination of grouping keys (in the order asked for)."""

    keys: tuple[str, ...]
    requests: int
    errors: int  # failed provider calls (counted in requests too)
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float  # sum of known costs
    unpriced: int  # calls whose cost is unknown


@dataclass(frozen=True, slots=True)
class ToolCallTotals:
    tool: str
    calls: int
    failures: int


class Store(Protocol):
    async def open(self) -> None:
        """Connect and run pending migrations."""
        ...

    async def close(self) -> None: ...

    # Events
    async def claim_event(self, platform: str, event_id: str) -> bool:
        """Record a platform event id; False if it was already recorded (a redelivery)."""
        ...

    # Sessions
    async def current_session(self, ref: ConversationRef) -> SessionRecord:
        """The open session for this conversation, created if there is none."""
        ...

    async def start_new_session(self, ref: ConversationRef) -> SessionRecord:
        """Close the conversation's open session (history is kept) and open a fresh one."""
        ...

    async def set_session_model(self, session_id: int, model: str | None) -> None: ...

    async def load_messages(self, session_id: int) -> list[StoredMessage]:
        """The session's live (not compacted) messages, oldest first."""
        ...

    async def append_messages(
        self,
        session_id: int,
        messages: Sequence[tuple[Message, int]],
        *,
        turn_id: int | None = None,
        turn_status: TurnStatus | None = None,
    ) -> list[int]:
        """Append (message, token count) pairs atomically, optionally setting a turn's status in the same
        transaction. Returns the new message ids."""
        ...

    async def compact(
        self, session_id: int, through_message_id: int, summary: str, summary_tokens: int
    ) -> None:
        """Mark messages up to and including `through_message_id` compacted and set the session summary."""
        ...

    # Turns
    async def add_turn(
        self, session_id: int, ref: ConversationRef, sender_id: str, text: str, event_id: str
    ) -> TurnRecord: ...

    async def set_turn_status(self, turn_id: int, status: TurnStatus) -> None: ...

    async def unfinished_turns(self, platform: str | None = None) -> list[TurnRecord]:
        """Turns still pending or running, oldest first (after a crash or restart)."""
        ...

    # Accounting
    async def record_usage(self, record: UsageRecord) -> None: ...

    async def record_tool_call(self, record: ToolCallRecord) -> None: ...

    async def usage_totals(
        self,
        since: datetime,
        until: datetime | None = None,
        *,
        user_id: str | None = None,
        platform: str | None = None,
    ) -> list[UsageTotals]: ...

    async def usage_grouped(
        self,
        since: datetime,
        until: datetime,
        by: Sequence[UsageDimension],
        *,
        user_id: str | None = None,
        platform: str | None = None,
    ) -> list[UsageGroup]:
        """Usage in [since, until) summed per combination of the `by` columns, biggest cost first (no
        `by`: one total row, none when there is no usage). Pre-aggregated: fast over millions of rows."""
        ...

    async def count_conversations(self, since: datetime, until: datetime) -> int:
        """Distinct sessions with a provider call in [since, until)."""
        ...

    async def tool_totals(self, since: datetime, until: datetime) -> list[ToolCallTotals]:
        """Tool calls and failures per tool in [since, until), most used first."""
        ...

    # Reports
    async def claim_report(self, day: date, destination: str) -> bool:
        """Claim the right to post `day`'s report to `destination`: True for exactly one caller, ever
        (across restarts and processes sharing the database), until the claim is released."""
        ...

    async def release_report(self, day: date, destination: str) -> None:
        """Undo a claim (posting failed), so a later run posts the day again."""
        ...

    async def last_reported_day(self, destination: str) -> date | None:
        """The latest day claimed for `destination` (None: never)."""
        ...
