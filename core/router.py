"""The core's front door: dedupe, access policy, command or conversation, and crash recovery.

An adapter calls `handle(message)` and renders the events it yields. Each conversation turn runs in its
own task so a slow or abandoned renderer never stalls the turn, and `stop` can cancel it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from core.access import AccessPolicy
from core.agent import SHUTDOWN, Agent
from core.budget import BudgetPolicy
from core.commands import CommandContext, ParsedCommand, parse_command, run_command
from core.conversation import Message
from core.events import TERMINAL_EVENTS, AgentEvent, CommandReply, Notice, Refused, TurnFailed
from core.inbound import ConversationRef, InboundMessage
from core.links import MessageLinks
from core.locks import KeyedLocks
from core.models import PriceTable
from core.providers.pool import ProviderPool
from core.sessions import SessionManager, SessionState
from core.storage.base import Store, TurnRecord

log = logging.getLogger(__name__)

DRAINING_REPLY = "I am restarting; please try again in a minute."
BROKEN_REPLY = "Something went wrong on my side; please try again."
INTERRUPTED_NOTE = "[interrupted: the bot restarted before this answer finished]"


@dataclass(frozen=True, slots=True)
class _Admitted:
    state: SessionState
    turn: TurnRecord


@dataclass(frozen=True, slots=True)
class RecoveredTurn:
    """A turn that was accepted but not finished before a restart; the adapter tells the user."""

    ref: ConversationRef
    text: str


class Router:
    def __init__(
        self,
        store: Store,
        sessions: SessionManager,
        agent: Agent,
        pool: ProviderPool,
        policy: AccessPolicy,
        prices: PriceTable,
        offered_models: tuple[str, ...] = (),
        budget: BudgetPolicy | None = None,
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._agent = agent
        self._pool = pool
        self._policy = policy
        self._prices = prices
        self._offered = offered_models
        self._budget = budget or BudgetPolicy()
        self._tasks: set[asyncio.Task[None]] = set()
        self.accepting = True  # False while draining for shutdown: new messages are turned away
        self._arrivals = KeyedLocks()
        self.links = MessageLinks(store)  # conversations of platform messages (Telegram reply chains)

    async def handle(self, message: InboundMessage) -> AsyncIterator[AgentEvent]:
        if message.sender.is_bot:
            return  # never answer bots (our own echoes included): no loops
        if not self.accepting:
            # Not claimed, so a redelivery (or another replica) can still handle the event.
            yield CommandReply(DRAINING_REPLY, private=True)
            return
        # One conversation's messages are claimed and stored one at a time, in the order they arrived:
        # turns run in the order they were stored (in the whole fleet, on a shared store).
        async with self._arrivals.hold(message.ref.key):
            verdict = await self._admit(message)
        if isinstance(verdict, _Admitted):
            async for event in self._converse(message, verdict.state, verdict.turn):
                yield event
        elif isinstance(verdict, ParsedCommand):
            try:
                reply = await run_command(verdict, self._command_context(message, verdict.args))
            except Exception:
                log.exception("command %s failed", verdict.name)
                reply = BROKEN_REPLY
            yield CommandReply(reply, private=True)
        elif verdict is not None:
            yield verdict

    async def _admit(self, message: InboundMessage) -> _Admitted | ParsedCommand | AgentEvent | None:
        """Claim the event and store it as a turn, or say why not (None: a duplicate, dropped)."""
        try:
            if not await self._store.claim_event(message.ref.platform, message.event_id):
                log.info("duplicate event %s on %s ignored", message.event_id, message.ref.platform)
                return None
        except Exception:  # the database is away: say so; unclaimed, a redelivery can still get it
            log.exception("could not record event %s", message.event_id)
            return TurnFailed("internal_error", BROKEN_REPLY)
        refusal = self._policy.refusal(message)
        if refusal:
            return Refused(refusal)
        parsed = parse_command(message.text)
        if parsed is not None:
            return parsed
        if not message.text.strip() and not message.images:
            return CommandReply("I got an empty message. Ask me anything, or send /help.", private=True)
        try:
            state = await self._sessions.get(message.ref)
            # Stored before anything else so a crash from here on never loses the message.
            turn = await self._store.add_turn(
                state.id, message.ref, message.sender.id, message.text, message.event_id
            )
        except Exception:
            log.exception("could not accept event %s", message.event_id)
            return TurnFailed("internal_error", BROKEN_REPLY)
        return _Admitted(state, turn)

    def _command_context(self, message: InboundMessage, args: str) -> CommandContext:
        return CommandContext(
            message=message,
            args=args,
            is_admin=self._policy.is_admin(message),
            sessions=self._sessions,
            store=self._store,
            pool=self._pool,
            prices=self._prices,
            default_model=str(self._agent.config.default_model),
            offered_models=self._offered,
            budget=self._budget,
        )

    async def _converse(
        self, message: InboundMessage, state: SessionState, record: TurnRecord
    ) -> AsyncIterator[AgentEvent]:
        queue: asyncio.Queue[AgentEvent] = asyncio.Queue()
        if state.lock.locked():
            queue.put_nowait(Notice("queued", "I will answer this once I finish the previous message."))
        task = asyncio.create_task(self._run_turn(state, record, message, queue))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        while True:
            event = await queue.get()
            yield event
            if isinstance(event, TERMINAL_EVENTS):
                return

    async def _run_turn(
        self,
        state: SessionState,
        record: TurnRecord,
        message: InboundMessage,
        queue: asyncio.Queue[AgentEvent],
    ) -> None:
        try:
            # One turn at a time per conversation, in arrival order (in the fleet: in turn order).
            async with self._sessions.turn_slot(state, record):
                current = asyncio.current_task()
                assert current is not None
                self._sessions.set_running(message.ref.key, current)
                await self._agent.run_turn(state, record, message, queue.put_nowait)
        except asyncio.CancelledError:
            # Cancelled while still queued (shutdown): the turn stays pending and is recovered at start-up.
            queue.put_nowait(TurnFailed("cancelled", "Stopped before I started on this message."))
            raise
        except Exception:
            # The agent handles its own failures; this is the store failing under it (the database went
            # away, say). The user hears about it, and the turn must not stay "running": on a shared
            # store that would hold the conversation back in every other replica.
            log.exception("turn %s could not run", record.id)
            queue.put_nowait(TurnFailed("internal_error", BROKEN_REPLY))
            with contextlib.suppress(Exception):
                await self._store.set_turn_status(record.id, "failed")

    async def recover(self, platform: str) -> list[RecoveredTurn]:
        """Close turns a crash or restart left unfinished, keeping history valid; return notes to post."""
        recovered: list[RecoveredTurn] = []
        for turn in await self._store.unfinished_turns(platform):
            state = await self._sessions.get(turn.ref)
            # Held like a turn: another replica may be answering in this conversation right now.
            async with self._sessions.turn_slot(state, turn):
                if state.id == turn.session_id:
                    closing = [Message.assistant(INTERRUPTED_NOTE)]
                    if turn.status == "pending":  # never started: its message is not in history yet
                        closing.insert(0, Message.user(turn.text))
                    await self._sessions.append(state, closing, turn_id=turn.id, turn_status="interrupted")
                else:
                    await self._store.set_turn_status(turn.id, "interrupted")
            snippet = turn.text if len(turn.text) <= 80 else turn.text[:77] + "..."
            recovered.append(
                RecoveredTurn(
                    turn.ref, f'I restarted before I could finish answering "{snippet}". Please ask again.'
                )
            )
        return recovered

    async def drain(self, timeout_s: float) -> int:
        """Stop accepting messages, let running turns finish for up to `timeout_s`, then cancel the rest
        (the agent stores a cancelled turn's partial answer, so history stays valid). Returns how many
        turns were cancelled."""
        self.accepting = False
        pending = set(self._tasks)
        if pending:
            _, pending = await asyncio.wait(pending, timeout=timeout_s)
        for task in pending:
            task.cancel(SHUTDOWN)  # stored and shown as "interrupted", not as stopped by the user
        await asyncio.gather(*pending, return_exceptions=True)
        if pending:
            log.warning("%d turn(s) did not finish within %.0fs and were stopped", len(pending), timeout_s)
        return len(pending)

    async def aclose(self) -> None:
        """Cancel turns in flight (they store what they have) and wait for them."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.links.flush()
