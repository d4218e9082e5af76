"""The store seam. Callers never write SQL; a backend implements `Store`.

SQLite (aiosqlite, WAL) is the embedded default for one process; PostgreSQL (asyncpg) lets several
processes (replicas) share one database, and then also coordinates them: a conversation runs one turn at
a time in the whole fleet, in order, and a replica takes over only the turns of replicas that are gone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal, Protocol

from core.conversation import Message
from core.inbound import ConversationRef


class StoreUnavailableError(RuntimeError):
    """The database cannot be reached or refused us (the message never contains credentials)."""


TurnStatus = Literal["pending", "running", "done", "failed", "cancelled", "interrupted"]
# A tool call waiting for a person: pending until approved, denied, expired or cancelled (a /stop).
ChoiceStatus = Literal["pending", "approved", "denied", "expired", "cancelled"]


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: int
    ref: ConversationRef
    model: str | None  # provider-qualified model chosen with the `model` command; None = default
    summary: str  # summary of compacted earlier turns ("" if none)
    summary_tokens: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SessionHead:
    """A conversation's open session and its newest live message id (None: no live messages), to tell
    whether a copy held in memory is still current when other processes may have written to it."""

    record: SessionRecord
    last_message_id: int | None


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: int
    message: Message
    tokens: int


@dataclass(frozen=True, slots=True)
class TurnRecord:
    """An accepted inbound message: stored before it is processed so a crash never loses it.

    `answer` is the final text the user must see (set when the turn ends); `delivered_at` is set once it
    has landed on the platform, so a finished turn whose answer never arrived can be delivered after a
    restart (to `reply_address`, the adapter's opaque "where to answer"). `shown`: the platform messages
    the answer has been shown in so far."""

    id: int
    session_id: int
    ref: ConversationRef
    sender_id: str
    text: str
    event_id: str
    status: TurnStatus
    created_at: datetime
    reply_address: str = ""
    is_dm: bool = False
    sender_name: str = ""
    answer: str | None = None
    delivered_at: datetime | None = None
    shown: tuple[str, ...] = ()
    regenerates: int = 0  # the turn whose answer this one regenerates (0: an ordinary turn)
    model: str = ""  # the provider-qualified model that wrote the answer ("" until it is written)


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
    regeneration: bool = False  # the call answered a "regenerate" (not a new question)


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
class ChoiceRecord:
    """A tool call that waits (or waited) for a person's approval; it outlives the process that asked.

    `step` is the paused model step as JSON (`message_to_json` of the assistant message with its tool
    calls), the same for every choice of that step: a turn resumed after a restart carries on from it
    instead of asking the model again. `ran_at`: the approved call started running (it never runs twice).
    """

    id: int
    turn_id: int
    conversation_key: str
    call_id: str
    tool: str
    arguments: str  # JSON object
    step: str
    requested_by: str  # sender id of the person whose message started the turn
    status: ChoiceStatus
    created_at: datetime
    expires_at: datetime
    decided_by: str = ""  # sender id of who decided ("" for expiry / cancel)
    decided_by_name: str = ""
    decided_at: datetime | None = None
    message_id: str = ""  # the approval card's platform message ("" until shown)
    ran_at: datetime | None = None


AuditDecision = Literal["allowed", "approved", "always", "denied", "policy_denied", "expired", "cancelled"]
AuditOutcome = Literal["ok", "error", "not_run"]


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One tool call and how it was decided (`bot audit`, `/audit`). `arguments` is a short summary."""

    ts: datetime  # when the call was asked for
    platform: str
    conversation_key: str
    turn_id: int | None
    asked_by: str  # sender id of the person whose message started the turn
    tool: str
    arguments: str
    decision: AuditDecision
    decided_by: str  # "" for the policy, expiry or cancel
    waited_ms: float  # time spent waiting for a person
    duration_ms: float  # time the tool ran (0 when it did not)
    outcome: AuditOutcome
    detail: str = ""  # the error, shortened, when the call failed or did not run


@dataclass(frozen=True, slots=True)
class RatingTotals:
    """Answer ratings in a period for one key (a provider-qualified model, or a channel)."""

    key: str
    up: int
    down: int

    @property
    def rate(self) -> float:
        """The share of 👍 among ratings (0.0 when there are none)."""
        total = self.up + self.down
        return self.up / total if total else 0.0


RatingDimension = Literal["model", "channel"]


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
    # True when other processes may serve the same conversations (a shared PostgreSQL): memory copies of
    # a session must then be checked against `session_head` before a turn uses them.
    shared: bool

    async def open(self) -> None:
        """Connect and run pending migrations."""
        ...

    async def close(self) -> None: ...

    async def ready(self) -> bool:
        """The database answers (and, when shared, this process is connected to the fleet)."""
        ...

    # Events
    async def claim_event(self, platform: str, event_id: str) -> bool:
        """Record a platform event id; False if it was already recorded (a redelivery, or another
        replica got it first)."""
        ...

    async def prune_events(self, older_than: datetime) -> int:
        """Forget event ids first seen before `older_than` (platforms stop redelivering after a while).
        Returns how many were removed."""
        ...

    # Message links
    async def link_message(self, platform: str, chat: str, message_id: str, thread: str) -> None:
        """Remember that a platform message belongs to conversation thread `thread` of `chat`."""
        ...

    async def linked_thread(self, platform: str, chat: str, message_id: str) -> str | None:
        """The thread a message was linked to (None: never linked)."""
        ...

    # Sessions
    async def current_session(self, ref: ConversationRef) -> SessionRecord:
        """The open session for this conversation, created if there is none."""
        ...

    async def start_new_session(self, ref: ConversationRef) -> SessionRecord:
        """Close the conversation's open session (history is kept) and open a fresh one."""
        ...

    async def session_head(self, ref: ConversationRef) -> SessionHead:
        """The conversation's open session (created if there is none) and its newest live message id."""
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
        answer: str | None = None,
        model: str | None = None,
    ) -> list[int]:
        """Append (message, token count) pairs atomically, optionally setting a turn's status (and, with
        `answer`, its final answer; with `model`, the model that wrote it) in the same transaction.
        Returns the new message ids."""
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

    async def admit_turn(
        self,
        ref: ConversationRef,
        sender_id: str,
        text: str,
        event_id: str,
        *,
        reply_address: str = "",
        is_dm: bool = False,
        sender_name: str = "",
        regenerates: int = 0,
    ) -> TurnRecord | None:
        """Claim event `event_id` (of `ref.platform`) and store its turn, pending, in the conversation's
        open session (created if there is none), all in one transaction: a claimed event always has its
        turn. None if the event was already claimed (then nothing is written)."""
        ...

    async def turn_before(self, conversation_key: str, turn_id: int) -> TurnRecord | None:
        """The newest turn of the conversation with an id below `turn_id` (any session, any status)."""
        ...

    async def drop_messages_from(self, session_id: int, message_id: int) -> int:
        """Take the session's live messages with ids >= `message_id` out of its history (they are kept,
        marked like compacted ones, and no longer loaded): a regenerated answer replaces them. Returns
        how many."""
        ...

    async def set_turn_status(self, turn_id: int, status: TurnStatus) -> None: ...

    async def set_turn_answer(self, turn_id: int, status: TurnStatus, answer: str) -> None:
        """Set a turn's status and final answer in one write (a turn that ends without messages)."""
        ...

    async def mark_delivered(self, turn_id: int) -> None:
        """Record that the turn's answer has landed on the platform (idempotent: the first time stays)."""
        ...

    async def add_shown_message(self, turn_id: int, message_id: str) -> None:
        """Record that the turn's answer is shown (in part) in platform message `message_id`."""
        ...

    async def get_turn(self, turn_id: int) -> TurnRecord | None:
        """A turn by id, whatever its status (None if unknown)."""
        ...

    async def unfinished_turns(self, platform: str | None = None) -> list[TurnRecord]:
        """Turns left pending or running by a process that is gone (a crash or restart), oldest first.
        The caller takes them over: another caller (another replica) does not get them too. Turns this
        process is still working on are never returned."""
        ...

    async def undelivered_turns(self, platform: str, since: datetime) -> list[TurnRecord]:
        """Turns of `platform` created at or after `since` that have an answer not yet delivered, left by
        a process that is gone, oldest first. Taken over like `unfinished_turns`: no other caller gets
        them too."""
        ...

    async def request_stop(self, key: str) -> bool:
        """Ask other processes to stop the turn of conversation `key` they are running; False if none
        is (a single-process store always answers False)."""
        ...

    def on_stop_requested(self, handler: Callable[[str], object]) -> None:
        """Call `handler(key)` when another process asks to stop a turn of conversation `key`."""
        ...

    def hold_conversation(self, key: str, turn_id: int) -> AbstractAsyncContextManager[None]:
        """Wait until turn `turn_id` of conversation `key` may run, and hold the conversation while it
        does: no other process runs a turn of it meanwhile, and no older turn of it is still waiting
        in another live process. Within one process the caller serialises turns itself."""
        ...

    # Choices (tool approvals)
    async def add_choice(
        self,
        turn_id: int,
        conversation_key: str,
        call_id: str,
        tool: str,
        arguments: str,
        step: str,
        requested_by: str,
        expires_at: datetime,
    ) -> ChoiceRecord:
        """Store a pending choice."""
        ...

    async def get_choice(self, choice_id: int) -> ChoiceRecord | None: ...

    async def turn_choices(self, turn_id: int) -> list[ChoiceRecord]:
        """The turn's choices, oldest first."""
        ...

    async def set_choice_message(self, choice_id: int, message_id: str) -> None:
        """Record the platform message of the choice's card."""
        ...

    async def decide_choice(
        self, choice_id: int, status: ChoiceStatus, decided_by: str, decided_by_name: str, now: datetime
    ) -> ChoiceRecord | None:
        """Set a pending, unexpired (`expires_at > now`) choice's status (approved / denied, or with an
        empty `decided_by` expired / cancelled) in one conditional write: exactly one caller in the whole
        fleet wins. Returns the decided record, or None when it was not pending (decided, expired)."""
        ...

    async def mark_choice_ran(self, choice_id: int, now: datetime) -> bool:
        """Record that the approved call starts running; False if it was already recorded (never run a
        call twice, whichever process resumes the turn)."""
        ...

    async def grant_tool(self, conversation_key: str, tool: str, granted_by: str) -> None:
        """Always allow here: `tool` runs without asking in this conversation from now on."""
        ...

    async def granted_tools(self, conversation_key: str) -> frozenset[str]: ...

    # Audit and ratings
    async def record_audit(self, record: AuditRecord) -> None: ...

    async def audit_entries(
        self, since: datetime, *, limit: int = 50, platform: str | None = None
    ) -> list[AuditRecord]:
        """Audit rows from `since` on, newest first, at most `limit`."""
        ...

    async def rate_answer(self, turn_id: int, user_id: str, rating: int, now: datetime) -> bool:
        """Record `user_id`'s rating (+1 / -1) of turn `turn_id`'s answer; their last rating wins. False
        when the turn is unknown."""
        ...

    async def rating_totals(
        self, since: datetime, until: datetime, by: RatingDimension, *, platform: str | None = None
    ) -> list[RatingTotals]:
        """Ratings given in [since, until) per model (the turn's `model`) or per channel (platform and
        channel as `platform:channel`), most rated first."""
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
