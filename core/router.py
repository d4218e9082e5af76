"""The core's front door: dedupe, access policy, command or conversation, and crash recovery.

An adapter calls `handle(message)` and renders the events it yields. Each conversation turn runs in its
own task so a slow or abandoned renderer never stalls the turn, and `stop` can cancel it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from core import regenerate
from core.access import AccessPolicy
from core.actions import Button, Buttons, Click, ClickReply, RegenerateAction, answer_buttons, encode_action
from core.agent import SHUTDOWN, Agent
from core.budget import BudgetPolicy
from core.clicks import ClickDesk
from core.commands import CommandContext, ParsedCommand, parse_command, run_command
from core.conversation import Message, tool_names_since_last_question
from core.delivery import Pressure
from core.events import (
    TERMINAL_EVENTS,
    AgentEvent,
    CommandReply,
    Notice,
    NoticeKind,
    Refused,
    TurnDone,
    TurnFailed,
)
from core.inbound import (
    DEFAULT_MAX_MESSAGE_CHARS,
    InboundMessage,
    Sender,
    cut_to,
    storable_message,
)
from core.links import MessageLinks
from core.locks import KeyedLocks
from core.logcontext import bind
from core.models import PriceTable
from core.pacing import DEFAULT_INTERIM_UPDATES_PER_S, InterimBudget
from core.present import Outcome, Presenter
from core.providers.pool import ProviderPool
from core.sessions import SessionManager, SessionState
from core.storage.base import Store, TurnRecord
from core.surface import Surface, SurfaceFor

log = logging.getLogger(__name__)

DRAINING_REPLY = "I am restarting; please try again in a minute."
BROKEN_REPLY = "Something went wrong on my side; please try again."
INTERRUPTED_NOTE = "[interrupted: the bot restarted before this answer finished]"
EMPTY_REPLY = "I got an empty message. Ask me anything, or send /help."
# Answers older than this that were never shown are not posted after a restart: too late to matter.
REDELIVER_WITHIN = timedelta(hours=6)
# An answer whose adapter failed while showing it waits this long for its turn to end (polled).
SHOW_AGAIN_WAIT_S = 600.0
SHOW_AGAIN_POLL_S = 0.5
# The notice kind of "your message was cut": a lasting one, shown under the answer.
CUT_NOTICE: NoticeKind = "cut"

# Wraps the event stream of one message (metrics); must yield every event it is given.
EventObserver = Callable[[InboundMessage, AsyncIterator[AgentEvent]], AsyncIterator[AgentEvent]]


@dataclass(frozen=True, slots=True)
class Admission:
    """What the router decided about one inbound message. A conversation turn (`turn`) is already
    stored, together with the event's claim, when this is returned: the adapter may acknowledge the
    event to its platform from then on. Otherwise `command` or an immediate `reply`; neither (and no
    turn): a duplicate, dropped."""

    message: InboundMessage
    turn: TurnRecord | None = None
    state: SessionState | None = None
    command: ParsedCommand | None = None
    reply: AgentEvent | None = None
    cut_from: int = 0  # the length the text had before it was cut to the size cap (0: not cut)

    @property
    def duplicate(self) -> bool:
        return self.turn is None and self.command is None and self.reply is None


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
        max_message_chars: int = DEFAULT_MAX_MESSAGE_CHARS,
        interim_updates_per_s: float = DEFAULT_INTERIM_UPDATES_PER_S,
        buttons: bool = True,
    ) -> None:
        """`buttons`: 👍 / 👎 / regenerate under every answer (BOT_ANSWER_BUTTONS)."""
        self._store = store
        self._sessions = sessions
        self._agent = agent
        self._pool = pool
        self._policy = policy
        self._prices = prices
        self._offered = offered_models
        self._budget = budget or BudgetPolicy()
        self._max_chars = max_message_chars
        self._tasks: set[asyncio.Task[None]] = set()
        self.accepting = True  # False while draining for shutdown: new messages are turned away
        self._arrivals = KeyedLocks()
        self._pressure: dict[str, Pressure] = {}
        # Interim updates per second for every answer streaming in this process (see core/pacing.py).
        self.interim = InterimBudget(interim_updates_per_s)
        self._showing: dict[str, asyncio.Future[None]] = {}  # conversation key -> last answer being shown
        # Platform -> turns of this process whose presentation was cancelled with their adapter.
        self._unshown: dict[str, set[int]] = {}
        self._observer: EventObserver | None = None
        self.links = MessageLinks(store)  # conversations of platform messages (Telegram reply chains)
        self._buttons = buttons
        self._clicks = ClickDesk(store, policy, agent.approvals, self._regenerate_for, self.pressure)

    # --- the front door ---------------------------------------------------------------------------

    async def answer(self, message: InboundMessage, surface: Surface) -> Outcome:
        """Admit `message` and show what comes of it on `surface`: what adapters call."""
        return await self.present(await self.admit(message), surface)

    async def present(self, admission: Admission, surface: Surface) -> Outcome:
        """Show an admitted message's events on `surface`; once the final text has landed, the turn is
        marked delivered (so a restart never shows it again, and never leaves it unshown)."""
        if admission.duplicate:
            return Outcome()
        turn = admission.turn
        if turn is None:  # a command's reply or a refusal: nothing to keep in order with
            presenter = Presenter(surface, pressure=self.pressure(admission.message.ref.platform))
            return await presenter.present(self.events(admission), working=False)
        try:
            async with self._in_order(turn.ref.key) as previous:
                outcome = await self._presenter(surface, turn, previous).present(self.events(admission))
        except asyncio.CancelledError:
            # The adapter went down mid-answer (its handlers are cancelled) while the turn goes on:
            # shown again from the store once the adapter is back (`recover`).
            self._unshown.setdefault(turn.ref.platform, set()).add(turn.id)
            raise
        if not outcome.suspended:  # a turn waiting for an approval over a restart is not over
            await self._delivered(turn, outcome)
        return outcome

    def _presenter(
        self,
        surface: Surface,
        turn: TurnRecord,
        previous: asyncio.Future[None] | None,
        stale: Sequence[str] = (),
    ) -> Presenter:
        retry = Button(encode_action(RegenerateAction(turn.id)), "🔄 Try again")
        return Presenter(
            surface,
            pressure=self.pressure(turn.ref.platform),
            budget=self.interim,
            on_shown=partial(self._store.add_shown_message, turn.id),
            stale=stale,
            after=previous,
            on_card=self._store.set_choice_message,
            answer_buttons=answer_buttons(turn.id) if self._buttons else None,
            retry_buttons=Buttons((retry,)) if self._buttons else None,
        )

    @contextlib.asynccontextmanager
    async def _in_order(self, key: str) -> AsyncIterator[asyncio.Future[None] | None]:
        """Answers of one conversation land in the order of their turns: each final text waits for the
        one before it (still being retried through a 429 storm, say) to be done."""
        previous = self._showing.get(key)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._showing[key] = done
        try:
            yield previous
        finally:
            done.set_result(None)
            if self._showing.get(key) is done:
                del self._showing[key]

    def pressure(self, platform: str) -> Pressure:
        """One rate-limit state per platform, shared by every conversation on it."""
        return self._pressure.setdefault(platform, Pressure())

    async def _delivered(self, turn: TurnRecord, outcome: Outcome) -> None:
        if not outcome.delivered:
            log.warning("turn %s: the answer could not be delivered (%s)", turn.id, outcome.error)
            return
        try:
            await self._store.mark_delivered(turn.id)
        except Exception:  # it landed; at worst a restart shows it once more
            log.warning("could not record turn %s as delivered", turn.id, exc_info=True)

    async def handle(self, message: InboundMessage) -> AsyncIterator[AgentEvent]:
        """The events of one message (admitted here), for renderers that draw events themselves."""
        async for event in self.events(await self.admit(message)):
            yield event

    async def admit(self, message: InboundMessage) -> Admission:
        """Decide what `message` is and, for a conversation turn, store it with the event's claim in one
        transaction (so a crash never leaves a claimed event unanswered). Never raises.

        The one door every adapter goes through, so inbound text is made safe here, before anything is
        claimed or stored: cut to the size cap, and what no store can hold replaced (see `storable`)."""
        message, cut_from = cut_to(message, self._max_chars)
        message = storable_message(message)
        if message.sender.is_bot:
            return Admission(message)  # never answer bots (our own echoes included): no loops
        if not self.accepting:
            # Not claimed, so a redelivery (or another replica) can still handle the event.
            return Admission(message, reply=CommandReply(DRAINING_REPLY, private=True))
        # One conversation's messages are claimed and stored one at a time, in the order they arrived:
        # turns run in the order they were stored (in the whole fleet, on a shared store).
        async with self._arrivals.hold(message.ref.key):
            admission = await self._admit(message)
        if cut_from:
            log.info("event %s: text of %d characters cut to %d", message.event_id, cut_from, self._max_chars)
            admission = replace(admission, cut_from=cut_from)
        return admission

    async def _admit(self, message: InboundMessage) -> Admission:
        refusal = self._policy.refusal(message)
        parsed = parse_command(message.text) if not refusal else None
        if parsed is not None and parsed.name in regenerate.COMMAND_NAMES:
            return await self._admit_regenerate_command(message)
        empty = not message.text.strip() and not message.images
        try:
            if refusal or parsed is not None or empty:
                if not await self._store.claim_event(message.ref.platform, message.event_id):
                    return self._duplicate(message)
                if refusal:
                    return Admission(message, reply=Refused(refusal))
                if parsed is not None:
                    return Admission(message, command=parsed)
                return Admission(message, reply=CommandReply(EMPTY_REPLY, private=True))
            turn = await self._store.admit_turn(
                message.ref,
                message.sender.id,
                message.text,
                message.event_id,
                reply_address=message.reply_address,
                is_dm=message.is_dm,
                sender_name=message.sender.name,
                regenerates=message.regenerates,
            )
            if turn is None:
                return self._duplicate(message)
            state = await self._sessions.get(message.ref)
        except Exception:  # the database is away: say so; unclaimed, a redelivery can still get it
            log.exception("could not accept event %s", message.event_id)
            return Admission(message, reply=TurnFailed("internal_error", BROKEN_REPLY))
        return Admission(message, turn=turn, state=state)

    # --- buttons ---------------------------------------------------------------------------------------

    async def click(self, click: Click, surfaces: SurfaceFor) -> ClickReply:
        """A button pressed on `click.ref.platform` (see core/clicks.py); never raises. `surfaces`: the
        adapter's `surface_for`, to edit a card or show a regenerated answer where the turn was."""
        if not self.accepting:
            return ClickReply(DRAINING_REPLY, refused=True)
        return await self._clicks.handle(click, surfaces)

    async def _regenerate_for(self, turn: TurnRecord, click: Click, surfaces: SurfaceFor) -> ClickReply:
        """The regenerate button: the answer is written again below, in the same conversation."""
        refusal = await regenerate.refusal(self._store, self._sessions, turn)
        if refusal:
            return ClickReply(refusal, refused=True)
        message = replace(
            _inbound_of(turn),
            sender=click.sender,
            event_id=f"regenerate:{click.event_id}",
            regenerates=turn.id,
        )
        admission = await self._admit(message)
        if admission.turn is None:
            return ClickReply()  # the press was already taken (another replica)
        self._spawn(self._present_in_background(admission, surfaces(turn.ref, turn.reply_address)))
        return ClickReply("Writing another answer…")

    async def _admit_regenerate_command(self, message: InboundMessage) -> Admission:
        """`/regenerate`: the conversation's latest answer written again, like the button."""
        try:
            latest = await self._store.turn_before(message.ref.key, regenerate.NEWEST)
            refusal = await regenerate.refusal(self._store, self._sessions, latest)
            theirs = latest is None or regenerate.may_regenerate(latest, message, self._policy)
            if refusal is None and not theirs:
                refusal = regenerate.NOT_YOURS
        except Exception:
            log.exception("could not look up the answer to regenerate")
            return Admission(message, reply=TurnFailed("internal_error", BROKEN_REPLY))
        if refusal is not None or latest is None:
            if not await self._store.claim_event(message.ref.platform, message.event_id):
                return self._duplicate(message)
            return Admission(message, reply=CommandReply(refusal or regenerate.NOTHING, private=True))
        again = replace(message, text=latest.text, regenerates=latest.id)
        return await self._admit(again)

    async def _present_in_background(self, admission: Admission, surface: Surface) -> None:
        try:
            await self.present(admission, surface)
        except Exception:
            log.exception("could not show a regenerated answer")

    @staticmethod
    def _duplicate(message: InboundMessage) -> Admission:
        log.info("duplicate event %s on %s ignored", message.event_id, message.ref.platform)
        return Admission(message)

    def observe_events(self, observer: EventObserver) -> None:
        """Pass every admission's event stream through `observer` (metrics)."""
        self._observer = observer

    def events(self, admission: Admission) -> AsyncIterator[AgentEvent]:
        """The events an admission yields: a turn's stream, a command's reply, or the immediate reply."""
        events = self._events(admission)
        return self._observer(admission.message, events) if self._observer is not None else events

    async def _events(self, admission: Admission) -> AsyncIterator[AgentEvent]:
        message = admission.message
        if admission.turn is not None and admission.state is not None:
            if admission.cut_from:
                yield Notice(CUT_NOTICE, cut_notice(self._max_chars, admission.cut_from))
            async for event in self._converse(message, admission.state, admission.turn):
                yield event
        elif admission.command is not None:
            command = admission.command
            try:
                reply = await run_command(command, self._command_context(message, command.args))
            except Exception:
                log.exception("command %s failed", command.name)
                reply = BROKEN_REPLY
            yield CommandReply(reply, private=True)
        elif admission.reply is not None:
            yield admission.reply

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
        self, message: InboundMessage, state: SessionState, record: TurnRecord, *, resume: bool = False
    ) -> AsyncIterator[AgentEvent]:
        queue: asyncio.Queue[AgentEvent] = asyncio.Queue()
        if state.lock.locked():
            queue.put_nowait(Notice("queued", "I will answer this once I finish the previous message."))
        task = asyncio.create_task(self._run_turn(state, record, message, queue, resume=resume))
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
        *,
        resume: bool = False,
    ) -> None:
        # This task is the turn's: every line logged on its way carries where it belongs.
        bind(platform=message.ref.platform, conversation=message.ref.key, turn_id=record.id)
        try:
            # One turn at a time per conversation, in arrival order (in the fleet: in turn order).
            async with self._sessions.turn_slot(state, record):
                current = asyncio.current_task()
                assert current is not None
                self._sessions.set_running(message.ref.key, current)
                if record.regenerates and not resume:
                    refused = await regenerate.rewind(self._store, self._sessions, state, record)
                    if refused:
                        await self._store.set_turn_answer(record.id, "failed", refused)
                        queue.put_nowait(TurnFailed("cancelled", refused))
                        return
                await self._agent.run_turn(state, record, message, queue.put_nowait, resume=resume)
        except asyncio.CancelledError:
            # Cancelled while still queued (shutdown): the turn stays pending and is answered at start-up.
            queue.put_nowait(TurnFailed("cancelled", "Stopped before I started on this message."))
            raise
        except Exception:
            # The agent handles its own failures; this is the store failing under it (the database went
            # away, say). The user hears about it, and the turn must not stay "running": on a shared
            # store that would hold the conversation back in every other replica.
            log.exception("turn %s could not run", record.id)
            queue.put_nowait(TurnFailed("internal_error", BROKEN_REPLY))
            with contextlib.suppress(Exception):
                await self._store.set_turn_answer(record.id, "failed", BROKEN_REPLY)

    # --- after a restart ---------------------------------------------------------------------------

    async def recover(self, platform: str, surfaces: SurfaceFor) -> int:
        """Finish what a crash or restart left undone on `platform`: answers stored but never shown are
        delivered; turns that never ran are answered now; turns cut off mid-way are run again when
        every tool they used only reads, else closed with a note (an acting tool must not run twice).
        Turns run in the background (in order per conversation); returns how many were taken over."""
        taken = 0
        for turn_id in sorted(self._unshown.pop(platform, ())):
            taken += 1
            self._spawn(self._show_again(turn_id, surfaces))
        since = datetime.now(UTC) - REDELIVER_WITHIN
        for turn in await self._store.undelivered_turns(platform, since):
            taken += 1
            self._spawn(self._redeliver(turn, surfaces))
        for turn in await self._store.unfinished_turns(platform):
            taken += 1
            state = await self._sessions.get(turn.ref)
            message = _inbound_of(turn)
            if turn.status == "running" and not await self._resumable(state, turn):
                self._spawn(self._close_interrupted(state, turn, surfaces))
                continue
            admission = Admission(message, turn=turn, state=state)
            events = self._converse(message, state, turn, resume=turn.status == "running")
            self._spawn(self._present_recovered(admission, events, surfaces))
        return taken

    async def _resumable(self, state: SessionState, turn: TurnRecord) -> bool:
        """True when the interrupted turn only used tools that read (or none), so it is safe to run
        again, or when it was paused in a step waiting for an approval (it carries on from that step)."""
        if state.id != turn.session_id:
            return False  # the conversation moved on (/new) since
        approvals = self._agent.approvals
        if approvals is not None and await approvals.paused_step(turn.id, state.messages()) is not None:
            return True
        used = tool_names_since_last_question(state.messages())
        return all((tool := self._agent.tools.get(name)) is not None and tool.read_only for name in used)

    async def _show_again(self, turn_id: int, surfaces: SurfaceFor) -> None:
        """An answer of this process that did not land (its adapter failed while showing it), shown
        once the turn has ended (it went on meanwhile); the store's undelivered turns are only the ones
        other processes left."""
        for _ in range(int(SHOW_AGAIN_WAIT_S / SHOW_AGAIN_POLL_S)):
            turn = await self._store.get_turn(turn_id)
            if turn is None or turn.delivered_at is not None:
                return
            if turn.answer is not None:
                await self._redeliver(turn, surfaces)
                return
            await asyncio.sleep(SHOW_AGAIN_POLL_S)
        log.warning("turn %s: no answer to show again after %.0fs", turn_id, SHOW_AGAIN_WAIT_S)

    async def _redeliver(self, turn: TurnRecord, surfaces: SurfaceFor) -> None:
        assert turn.answer is not None
        log.info("turn %s: delivering an answer stored before a restart", turn.id)
        await self._present_recovered(
            Admission(_inbound_of(turn), turn=turn), _one(TurnDone(turn.answer)), surfaces
        )

    async def _close_interrupted(self, state: SessionState, turn: TurnRecord, surfaces: SurfaceFor) -> None:
        snippet = turn.text if len(turn.text) <= 80 else turn.text[:77] + "..."
        note = (
            f'I restarted while answering "{snippet}", after a tool that acts had already run, so I did '
            "not run it again. Please check what it did and ask again if needed."
        )
        try:
            async with self._sessions.turn_slot(state, turn):
                await self._sessions.append(
                    state,
                    [Message.assistant(INTERRUPTED_NOTE)],
                    turn_id=turn.id,
                    turn_status="interrupted",
                    answer=note,
                )
        except Exception:
            log.exception("could not close interrupted turn %s", turn.id)
            return
        admission = Admission(_inbound_of(turn), turn=turn)
        await self._present_recovered(admission, _one(TurnFailed("cancelled", note)), surfaces)

    async def _present_recovered(
        self, admission: Admission, events: AsyncIterator[AgentEvent], surfaces: SurfaceFor
    ) -> None:
        assert admission.turn is not None
        turn = admission.turn
        try:
            surface = surfaces(turn.ref, turn.reply_address)
            async with self._in_order(turn.ref.key) as previous:
                # `stale`: what the killed process (or failed adapter) had shown of this answer.
                presenter = self._presenter(surface, turn, previous, stale=turn.shown)
                outcome = await presenter.present(events, working=False)
        except Exception:
            log.exception("could not deliver recovered turn %s", turn.id)
            return
        await self._delivered(turn, outcome)
        if await presenter.remove_stale():
            log.info("turn %s: removed what the interrupted attempt had shown", turn.id)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_idle(self) -> None:
        """Wait until no turn (recovered ones included) is running or being shown."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

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


def cut_notice(limit: int, length: int) -> str:
    return (
        f"Your message was {length:,} characters long, more than the {limit:,} I take, so I read only the "
        f"first {limit:,}. Send the rest in another message if it matters."
    )


def _inbound_of(turn: TurnRecord) -> InboundMessage:
    """The stored turn as the message it was (images are not stored: a re-run sees the text only)."""
    return InboundMessage(
        turn.ref,
        Sender(turn.sender_id, turn.sender_name),
        turn.text,
        turn.event_id,
        is_dm=turn.is_dm,
        reply_address=turn.reply_address,
        regenerates=turn.regenerates,
    )


async def _one(event: AgentEvent) -> AsyncIterator[AgentEvent]:
    yield event
