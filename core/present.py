"""One presenter for every platform: a turn's events -> what the user sees, through a `Surface`.

The whole policy lives here, once: the typing indicator or status line while the bot works, the answer
streamed natively where the surface has a stream and by post + paced edits elsewhere (one pacer for
both), tool calls (inside the stream, as their own messages, or as a transient line under the text),
transient notices (status, never left behind) and lasting ones (under the answer), the empty answer,
the failure line, the footer and private replies. The final text is retried until it lands (see
core/delivery.py); interim updates and cosmetic calls are skipped under pressure instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from core.actions import Buttons, approval_buttons
from core.delivery import ConversationPressure, FinalRetry, Pressure, deliver, optional
from core.events import (
    AgentEvent,
    ApprovalRequested,
    ApprovalResolved,
    CommandReply,
    Notice,
    Refused,
    TextDelta,
    TextReset,
    ToolFinished,
    ToolStarted,
    TurnDone,
    TurnFailed,
)
from core.pacing import BudgetShare, InterimBudget
from core.render import EditWriter
from core.surface import AnswerStream, DeliveryError, Note, NoteKind, StreamClosed, Surface
from core.textsplit import split_text

log = logging.getLogger(__name__)

THINKING = "is thinking…"
WAITING = "is waiting for approval…"
EMPTY_ANSWER = "The model returned an empty answer."
# Worth a line under the answer; the rest is transient.
LASTING_NOTICES = ("step_limit", "interrupted", "cut")
SHOWN_TOOLS = 3  # tool lines kept in a transient status line
STATUS_WAIT_S = 2.0  # how long the first write waits for the initial status call to settle
STALE_RETRY = FinalRetry(deadline_s=120.0)  # removing what a killed process left: worth a retry or two

# Hears of every platform message the answer is shown in, as soon as it exists (the router stores it).
OnShown = Callable[[str], Awaitable[None]]
# Hears of the message an approval card was posted in: (choice id, message id).
OnCard = Callable[[int, str], Awaitable[None]]


@dataclass
class Outcome:
    """What presenting one turn did, for the router (delivery state) and benchmarks."""

    delivered: bool = False  # the final text (or reply) landed
    final_text: str = ""  # what the user was last shown as the answer (Markdown, notes included)
    events: int = 0  # events the core yielded (0: a duplicate the core dropped)
    calls: int = 0  # platform calls made
    kind: str = "nothing"  # "answer", "reply" or "nothing"
    error: str = ""  # why the final text did not land
    suspended: bool = False  # the turn waits for an approval across a restart: not over yet


def _argument_summary(arguments: dict[str, object], limit: int = 60) -> str:
    text = ", ".join(f"{key}={value}" for key, value in list(arguments.items())[:2])
    text = " ".join(text.split()).replace("`", "'")
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ToolLines:
    """A compact transient view of tool calls: `⚙️ calculator(expression=6*7) …`, then `✅ … 0.4s`."""

    def __init__(self) -> None:
        self._lines: dict[str, str] = {}

    def started(self, event: ToolStarted) -> None:
        self._lines[event.call_id] = f"⚙️ `{event.name}({_argument_summary(event.arguments)})` …"

    def finished(self, event: ToolFinished) -> None:
        mark = "❌" if event.is_error else "✅"
        started = self._lines.get(event.call_id, f"⚙️ `{event.name}()` …")
        call = started.removeprefix("⚙️ ").removesuffix(" …")
        self._lines[event.call_id] = f"{mark} {call} {event.duration_s:.1f}s"

    def render(self) -> str:
        lines = list(self._lines.values())
        hidden = len(lines) - SHOWN_TOOLS
        shown = lines[-SHOWN_TOOLS:]
        return "\n".join(([f"… and {hidden} earlier tool calls"] if hidden > 0 else []) + shown)


@dataclass
class _Segment:
    """The part of the answer shown by one writer (a new segment starts after a rich tool message)."""

    start: int  # offset of the segment in the answer text
    writer: EditWriter | AnswerStream


@dataclass
class _Typing:
    wanted: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    broken: bool = False


class Presenter:
    def __init__(
        self,
        surface: Surface,
        *,
        pressure: Pressure | None = None,
        retry: FinalRetry | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_shown: OnShown | None = None,
        stale: Sequence[str] = (),
        after: asyncio.Future[None] | None = None,
        budget: InterimBudget | None = None,
        on_card: OnCard | None = None,
        answer_buttons: Buttons | None = None,
        retry_buttons: Buttons | None = None,
    ) -> None:
        """`stale`: messages an earlier attempt at this answer was shown in (a process killed mid-way);
        `remove_stale` deletes them once this answer has landed. `after`: done once the previous
        answer in this conversation has been shown; the final text waits for it, to keep the order.
        `budget`: the process's interim updates per second, shared with the other answers streaming.
        `answer_buttons` go under a finished answer, `retry_buttons` under one that failed."""
        self._surface = surface
        self._caps = surface.capabilities
        # Optional calls hold back under this conversation's 429s and under the platform's bot-wide ones.
        self._pressure = ConversationPressure(pressure or Pressure(), backlogged=surface.backlogged)
        self._retry = retry or FinalRetry()
        self._sleep = sleep
        self._clock = asyncio.get_running_loop().time
        self._text = ""  # the whole answer so far
        self._status = ""  # transient line (tools, notices) under the text
        self._tools = ToolLines()
        self._tool_messages: dict[str, tuple[str, ToolStarted]] = {}
        self._notes: list[Note] = []
        self._segments: list[_Segment] = []
        self._dirty = asyncio.Event()
        self._writing = asyncio.Lock()  # held around every writer call: the pacer and the final sync
        self._pacer: asyncio.Task[None] | None = None
        self._last_show = -1e9
        self._share = BudgetShare(budget)
        self._typing = _Typing()
        self._status_call: asyncio.Task[None] | None = None
        self._status_shown = False
        self._opened = False
        self._on_shown = on_shown
        self._recorded: set[str] = set()
        self._stale = tuple(stale)
        self._after = after
        self._on_card = on_card
        self._cards: dict[int, str] = {}  # choice id -> the message of its approval card
        self._answer_buttons = answer_buttons
        self._retry_buttons = retry_buttons
        self.outcome = Outcome()

    # --- the event loop -----------------------------------------------------------------------------

    async def present(self, events: AsyncIterator[AgentEvent], *, working: bool = True) -> Outcome:
        """Show every event of one turn (or one reply). `working`: the message starts model work, so
        show the indicator at once (not for commands)."""
        if working:
            self._begin()
        try:
            async for event in events:
                self.outcome.events += 1
                if await self._on(event):
                    break
        except DeliveryError as error:
            self.outcome.error = str(error)
            log.warning("a reply could not be delivered: %s", error)
        finally:
            await self._close()
            close = getattr(events, "aclose", None)
            if close is not None:
                await close()
        return self.outcome

    async def _on(self, event: AgentEvent) -> bool:
        """Show one event; True once the turn is over."""
        if isinstance(event, TextDelta):
            self._typing_off()
            self._append(event.text)
        elif isinstance(event, TextReset):
            self._reset(event.text)
        elif isinstance(event, ToolStarted | ToolFinished):
            self._typing_on()
            await self._tool(event)
        elif isinstance(event, ApprovalRequested):
            await self._approval(event)
        elif isinstance(event, ApprovalResolved):
            await self._approval_resolved(event)
        elif isinstance(event, Notice):
            await self._notice(event)
        elif isinstance(event, CommandReply | Refused):
            await self._reply(event)
            return True
        elif isinstance(event, TurnDone):
            footer = [Note("footer", event.footer)] if event.footer.strip() else []
            notes = [*self._notes, *footer]
            await self._finish(event.text, notes, empty_note=True, buttons=self._answer_buttons)
            return True
        elif isinstance(event, TurnFailed):
            stopped = event.reason in ("cancelled", "suspended")
            kind: NoteKind = "stopped" if stopped else "failure"
            buttons = None if stopped else self._retry_buttons
            await self._finish(event.partial_text, [*self._notes, Note(kind, event.message)], buttons=buttons)
            self.outcome.suspended = event.reason == "suspended"
            return True
        return False

    # --- working indicators ---------------------------------------------------------------------------

    def _begin(self) -> None:
        if self._caps.status:
            self._status_call = asyncio.create_task(self._set_status(THINKING))
        elif self._caps.typing_interval_s is None and self._caps.can_edit and not self._caps.native_stream:
            self._status_call = asyncio.create_task(self._placeholder())
        self._typing_on()

    async def _set_status(self, text: str) -> None:
        shown = await optional(lambda: self._surface.set_status(text), "status", self._pressure)
        self._status_shown = self._status_shown or (shown and bool(text))
        if not shown and text == THINKING and self._caps.can_edit and not self._caps.native_stream:
            await self._placeholder()  # no status line here after all: show that we are on it

    async def _placeholder(self) -> None:
        writer = self._edit_segment(0).writer
        if isinstance(writer, EditWriter):
            async with self._writing:
                await optional(writer.placeholder, "placeholder", self._pressure)
                await self._record_shown()

    async def _status_settled(self) -> None:
        """Before the first visible write: a late status call must not land after (and linger under)
        the answer, and a placeholder must exist before it is edited."""
        call, self._status_call = self._status_call, None
        if call is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(call), STATUS_WAIT_S)

    def _typing_on(self) -> None:
        if self._caps.typing_interval_s is None or self._typing.broken:
            return
        self._typing.wanted.set()
        if self._typing.task is None:
            self._typing.task = asyncio.create_task(self._keep_typing(self._caps.typing_interval_s))

    def _typing_off(self) -> None:
        self._typing.wanted.clear()

    async def _keep_typing(self, every_s: float) -> None:
        while True:
            await self._typing.wanted.wait()
            if self._pressure.unthrottled():
                try:
                    await self._surface.typing()
                except DeliveryError as error:
                    self._pressure.note(error)
                    if not error.transient:  # e.g. no access to the channel: stop trying
                        self._typing.broken = True
                        return
            await asyncio.sleep(every_s)

    # --- the answer text ------------------------------------------------------------------------------

    def _append(self, text: str) -> None:
        if text:
            self._text += text
            self._changed()

    def _reset(self, text: str) -> None:
        self._text = text
        segment = self._current()
        if segment is not None and segment.start > len(text):
            segment.start = len(text)
        self._changed()

    def _changed(self) -> None:
        self._dirty.set()
        if self._pacer is None and self._caps.can_edit:
            self._pacer = asyncio.create_task(self._pace())

    def _current(self) -> _Segment | None:
        return self._segments[-1] if self._segments else None

    def _edit_segment(self, start: int) -> _Segment:
        segment = self._current()
        if segment is None or segment.start != start:
            segment = _Segment(start, EditWriter(self._surface, self._caps))
            self._segments.append(segment)
        return segment

    async def _segment(self) -> _Segment:
        segment = self._current()
        if segment is not None:
            return segment
        stream = await self._surface.open_stream() if self._caps.native_stream else None
        if stream is not None:
            segment = _Segment(0, stream)
            self._segments.append(segment)
            return segment
        return self._edit_segment(0)

    def _segment_text(self, segment: _Segment) -> str:
        text = self._text[segment.start :]
        return text.lstrip() if segment.start else text  # a segment after a tool message starts clean

    async def _pace(self) -> None:
        """The one pacer: at most one interim update per `edit_interval_s`, holding back under pressure."""
        while True:
            await self._dirty.wait()
            interval = self._share.interval(self._caps.edit_interval_s)
            wait = max(self._last_show + interval - self._clock(), self._pressure.wait_s())
            if wait > 0:
                await asyncio.sleep(wait)
            self._dirty.clear()
            await self._status_settled()
            async with self._writing:
                await self._show()

    async def _show(self) -> None:
        segment = await self._segment()
        text = self._segment_text(segment)
        status = "" if self._status_shown and not text else self._status
        if not text.strip() and not status:
            return
        self._last_show = self._clock()
        self._share.join()  # streaming from now on: later updates share the budget
        writer = segment.writer
        try:
            await optional(lambda: writer.show(text, status), "interim update", self._pressure)
        except StreamClosed as closed:
            self._stream_closed(segment, closed)
        await self._record_shown()

    def _stream_closed(self, segment: _Segment, closed: StreamClosed) -> None:
        """Continue with post + edit after the text the stream made visible."""
        log.info("native stream closed after %d characters; posting and editing the rest", len(closed.shown))
        text = self._segment_text(segment)
        shown = len(closed.shown) if text.startswith(closed.shown) else len(text)
        start = segment.start + (len(self._text[segment.start :]) - len(text)) + shown
        self._segments.append(_Segment(start, EditWriter(self._surface, self._caps)))

    async def _stop_pacer(self) -> None:
        if self._pacer is not None:
            async with self._writing:  # never cancel it inside a platform call
                self._pacer.cancel()
                await asyncio.gather(self._pacer, return_exceptions=True)
            self._pacer = None

    # --- tools and notices ------------------------------------------------------------------------------

    async def _tool(self, event: ToolStarted | ToolFinished) -> None:
        if await self._stream_tool(event):
            return
        if self._caps.rich_tools:
            await self._rich_tool(event)
            return
        if isinstance(event, ToolStarted):
            self._tools.started(event)
        else:
            self._tools.finished(event)
        self._status = self._tools.render()
        self._changed()

    async def _stream_tool(self, event: ToolStarted | ToolFinished) -> bool:
        """Show the call inside the native stream (opened now if the call comes before any text); True
        when the stream took it, or when it is skipped under pressure (the answer stays a stream)."""
        if not self._caps.native_stream:
            return False
        if not self._pressure.calm():
            return True  # a tool line is cosmetic: skipped under pressure, and the answer stays a stream
        await self._stop_pacer()
        await self._status_settled()
        async with self._writing:
            segment = await self._segment()
            if isinstance(segment.writer, EditWriter):
                return False
            await self._show()  # text before the tool goes first
            segment = self._segments[-1]
            stream = segment.writer
            if isinstance(stream, EditWriter):
                return False  # the stream closed while showing that text
            try:
                if isinstance(event, ToolStarted):
                    return await stream.tool_started(event)
                return await stream.tool_finished(event)
            except DeliveryError as error:
                self._pressure.note(error)
                return True  # not shown; a tool line is cosmetic, the answer goes on in the stream
            except StreamClosed as closed:
                self._stream_closed(segment, closed)
                return False

    async def _rich_tool(self, event: ToolStarted | ToolFinished) -> None:
        surface = self._surface
        self.outcome.calls += 1
        if isinstance(event, ToolStarted):
            await self._close_segment()  # the tool message goes after the text so far, keeping the order

            async def post() -> None:
                self._tool_messages[event.call_id] = (await surface.post_tool(event), event)

            await optional(post, "tool", self._pressure)
            return
        posted = self._tool_messages.pop(event.call_id, None)
        if posted is not None:
            message_id, started = posted
            await optional(lambda: surface.edit_tool(message_id, started, event), "tool", self._pressure)

    async def _close_segment(self) -> None:
        """Make the text so far final in its messages; later text starts a new segment below."""
        await self._stop_pacer()
        segment = self._current()
        if segment is None or not self._segment_text(segment).strip():
            return
        await self._status_settled()
        await self._final_sync(segment, ())
        # Later text goes below in a new message: streamed again where the surface streams.
        stream = await self._surface.open_stream() if self._caps.native_stream else None
        self._segments.append(_Segment(len(self._text), stream or EditWriter(self._surface, self._caps)))

    async def _notice(self, event: Notice) -> None:
        if event.kind in LASTING_NOTICES:
            self._notes.append(Note("info", event.text))
            return
        if self._caps.status and not self._text.strip():
            await self._status_settled()
            await self._set_status(event.text[:100])
            return
        self._status = f"ℹ️ _{event.text}_"  # transient: replaced by the next status, gone at the end
        self._changed()

    # --- approval cards -------------------------------------------------------------------------------

    async def _approval(self, event: ApprovalRequested) -> None:
        """The text so far lands above the card; the card waits with its buttons; the indicator says so."""
        self._typing_off()
        await self._close_segment()
        if self._caps.status:
            await self._set_status(WAITING)
        if event.message_id:  # a resumed turn: its card is already there, buttons and all
            self._cards[event.choice_id] = event.message_id
            return
        post = partial(self._surface.post, event.prompt, approval_buttons(event.choice_id))
        message_id = await deliver(post, "approval card", self._retry, self._pressure)
        self._cards[event.choice_id] = message_id
        self.outcome.calls += 1
        if self._on_card is not None:
            try:
                await self._on_card(event.choice_id, message_id)
            except Exception:  # the click still works (it names the choice); only a check is lost
                log.warning("could not record the card of choice %s", event.choice_id, exc_info=True)

    async def _approval_resolved(self, event: ApprovalResolved) -> None:
        message_id = self._cards.get(event.choice_id)
        if message_id is None:
            return
        edit = partial(self._surface.edit, message_id, event.text, None)
        try:
            await deliver(edit, "approval card", self._retry, self._pressure)
        except DeliveryError as error:  # the answer matters more than the card's last line
            log.info("could not update the card of choice %s: %s", event.choice_id, error)
        self.outcome.calls += 1

    # --- the end --------------------------------------------------------------------------------------

    async def _reply(self, event: CommandReply | Refused) -> None:
        """A command's answer or a refusal: no model work, one short reply."""
        self.outcome.kind = "reply"
        self._typing_off()
        await self._stop_pacer()
        await self._status_settled()
        if self._status_shown:
            await optional(lambda: self._surface.set_status(""), "status", self._pressure)
        if isinstance(event, Refused) or event.private:
            await deliver(
                lambda: self._surface.private(event.text), "private reply", self._retry, self._pressure
            )
        else:
            for part in split_text(event.text, self._caps.max_message_chars):
                await deliver(partial(self._surface.post, part), "reply", self._retry, self._pressure)
        self.outcome.final_text = event.text
        self.outcome.delivered = True

    async def _finish(
        self, text: str, notes: list[Note], *, empty_note: bool = False, buttons: Buttons | None = None
    ) -> None:
        self.outcome.kind = "answer"
        self._share.leave()  # the final text is not an interim update
        self._typing_off()
        await self._stop_pacer()
        await self._status_settled()
        if text != self._text:  # the turn's own text is the truth (e.g. a recovered answer)
            self._text = text
            current = self._current()
            if current is not None and current.start > len(text):
                current.start = len(text)
        self._status = ""
        segment = await self._segment()
        wait = self._last_show + self._caps.edit_interval_s - self._clock()
        if wait > 0 and isinstance(segment.writer, EditWriter):
            # The final edit keeps the cadence too (per-chat flood limits). A native stream ends with
            # a call of its own (a stop, a real message after drafts) that no interim call competes with.
            await asyncio.sleep(wait)
        if empty_note and not self._text.strip() and len(self._segments) == 1:
            notes = [Note("info", EMPTY_ANSWER), *notes]
        if self._after is not None and not self._after.done():
            await asyncio.shield(self._after)  # the answer before this one lands first
        await self._final_sync(segment, notes, buttons)
        self.outcome.final_text = "\n\n".join(
            part for part in (self._text.strip("\n"), *(self._surface.note(n) for n in notes)) if part
        )
        self.outcome.delivered = True

    async def _final_sync(
        self, segment: _Segment, notes: Sequence[Note], buttons: Buttons | None = None
    ) -> None:
        """Make `segment` show its final text (and `notes`, and `buttons` under it), retried until it
        lands; a native stream that closes hands the rest to post + edit."""
        async with self._writing:
            try:
                while True:
                    finish = partial(segment.writer.finish, self._segment_text(segment), notes, buttons)
                    try:
                        await deliver(finish, "final text", self._retry, self._pressure)
                        return
                    except StreamClosed as closed:
                        self._stream_closed(segment, closed)
                        segment = self._segments[-1]
            finally:
                await self._record_shown()

    # --- the messages the answer is shown in ----------------------------------------------------------

    def _message_ids(self) -> list[str]:
        return [message_id for segment in self._segments for message_id in segment.writer.message_ids]

    async def _record_shown(self) -> None:
        """Report messages that appeared since the last call (a restart needs them, see `stale`)."""
        if self._on_shown is None:
            return
        for message_id in self._message_ids():
            if message_id in self._recorded:
                continue
            self._recorded.add(message_id)
            try:
                await self._on_shown(message_id)
            except Exception:  # only costs a leftover message after a crash: never the answer
                log.warning("could not record message %s of an answer", message_id, exc_info=True)

    async def remove_stale(self) -> int:
        """Delete the messages an earlier, killed attempt left (call once this answer has landed, so the
        user is never left with neither); returns how many went."""
        if not self.outcome.delivered:
            return 0
        current = set(self._message_ids())
        removed = 0
        for message_id in self._stale:
            if message_id in current:
                continue  # shown again in the same message (an edit): it is this answer now
            delete = partial(self._surface.delete, message_id)
            try:
                await deliver(delete, "stale message", STALE_RETRY, self._pressure)
                removed += 1
            except DeliveryError as error:
                log.info("could not remove message %s of an interrupted answer: %s", message_id, error)
        return removed

    async def _close(self) -> None:
        self._share.leave()
        self._typing_off()
        await self._stop_pacer()
        for task in (self._typing.task, self._status_call):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self.outcome.calls += sum(s.writer.calls for s in self._segments if isinstance(s.writer, EditWriter))
