"""The agent loop: model step -> tools -> model step ... until an answer, the step limit or a stop.

Every event goes to `emit` (the turn's event stream). History stays valid for every provider whatever
happens: an assistant message with tool calls is stored together with their results, and a cancelled or
failed turn still ends with an assistant message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from core.approvals import ApprovalDesk
from core.budget import BudgetGuard
from core.context import (
    SUMMARISE_INSTRUCTIONS,
    ContextBudget,
    build_messages,
    needs_compaction,
    split_point,
    summarise,
)
from core.conversation import Block, Message, TextBlock, ToolResultBlock, ToolUseBlock
from core.events import (
    AgentEvent,
    Notice,
    Refused,
    TextDelta,
    TextReset,
    TurnDone,
    TurnFailed,
)
from core.inbound import InboundMessage
from core.models import ModelId, context_window, parse_model_id
from core.providers.base import (
    ProviderError,
    ProviderRequest,
    StopChunk,
    TextChunk,
    ToolCallChunk,
    UsageChunk,
)
from core.providers.failover import (
    AttemptFailed,
    Chunk,
    RetryPolicy,
    StreamCutAfterOutput,
    stream_with_failover,
)
from core.providers.pool import ProviderPool
from core.sessions import SessionManager, SessionState
from core.storage.base import ChoiceRecord, Store, TurnRecord, TurnStatus
from core.tokens import TokenCounter
from core.tools.registry import ToolRegistry
from core.toolstep import StepContext, ToolStep
from core.usage import UsageRecorder, format_cost, plural

log = logging.getLogger(__name__)

SHUTDOWN = "shutdown"  # the cancel message of turns stopped because the bot is shutting down
SUSPENDED = (
    "I am restarting. The approval request above stays open: once it is answered I carry on with this "
    "answer here."
)

Emit = Callable[[AgentEvent], None]


@dataclass(frozen=True)
class AgentConfig:
    default_model: ModelId
    system_prompt: str
    fallback_model: ModelId | None = None
    max_steps: int = 8
    max_output_tokens: int = 4096
    context_tokens: int | None = None  # override the model's context window
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    cost_footer: bool = False  # fill TurnDone.footer with the turn's tokens and cost


@dataclass
class _Step:
    text: str = ""
    tool_calls: list[ToolCallChunk] = field(default_factory=list)
    stop_reason: str = ""


@dataclass
class _Call:
    """The provider call in flight: enough to record it if it never reports its usage (cancelled)."""

    model: ModelId
    request: ProviderRequest
    started: float = field(default_factory=time.perf_counter)
    output: list[str] = field(default_factory=list)  # text and tool arguments streamed so far


@dataclass
class _Turn:
    """Per-turn state, so a cancel at any point knows what to store."""

    state: SessionState
    record: TurnRecord
    inbound: InboundMessage
    emit: Emit
    model: ModelId
    text: str = ""  # all answer text so far (what the user sees now)
    step_text: str = ""  # text of the step in progress (not yet stored; taken back if its stream is retried)
    running_calls: list[ToolCallChunk] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = 0.0
    call: _Call | None = None  # the provider call in flight, until its usage row is written
    step: StepContext | None = None  # the tool phase's view of this turn (approvals it waits on)

    def add_text(self, text: str) -> None:
        self.text += text
        self.step_text += text
        self.emit(TextDelta(text))

    def discard_step_text(self) -> None:
        """The step's stream was cut and the step starts over: take back its text (`step_text` is always
        the tail of `text`) and tell the renderer what the answer is now."""
        self.text = self.text[: len(self.text) - len(self.step_text)]
        self.step_text = ""
        self.emit(TextReset(self.text))


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        pool: ProviderPool,
        tools: ToolRegistry,
        sessions: SessionManager,
        store: Store,
        usage: UsageRecorder,
        counter: TokenCounter,
        budget: BudgetGuard | None = None,
        approvals: ApprovalDesk | None = None,
    ) -> None:
        self.config = config
        self.approvals = approvals
        self._tool_step = ToolStep(tools, store, approvals)
        self._budget = budget
        self._pool = pool
        self._tools = tools
        self.tools = tools  # the router asks which tools only read (resuming a turn after a crash)
        self._sessions = sessions
        self._store = store
        self._usage = usage
        self._counter = counter

    def model_for(self, state: SessionState) -> ModelId:
        return parse_model_id(state.record.model) if state.record.model else self.config.default_model

    def budget_for(self, model: ModelId) -> ContextBudget:
        window = self.config.context_tokens or context_window(model)
        return ContextBudget(window, min(self.config.max_output_tokens, window // 4))

    async def run_turn(
        self,
        state: SessionState,
        record: TurnRecord,
        inbound: InboundMessage,
        emit: Emit,
        *,
        resume: bool = False,
    ) -> None:
        """Run one turn. `resume`: the turn was running when the bot stopped and its question (and any
        finished tool steps) are already in history: carry on from there."""
        turn = _Turn(state, record, inbound, emit, self.model_for(state))
        turn.step = StepContext(inbound, record.id, state.id, emit)
        user_message = Message("user", (TextBlock(inbound.text), *inbound.images))
        refusal = None if resume else self._too_long(turn, user_message)
        if refusal:
            await self._store.set_turn_answer(record.id, "failed", refusal)
            emit(TurnFailed("provider_error", refusal))
            return
        over_budget = await self._budget.refusal(inbound) if self._budget else None
        if over_budget:
            await self._store.set_turn_answer(record.id, "failed", over_budget)
            emit(Refused(over_budget))
            return
        try:
            paused = None
            if resume:
                await self._store.set_turn_status(record.id, "running")
                if self.approvals is not None:
                    paused = await self.approvals.paused_step(record.id, state.messages())
            else:
                await self._sessions.append(state, [user_message], turn_id=record.id, turn_status="running")
            await self._loop(turn, paused)
        except asyncio.CancelledError as cancel:
            shutdown = SHUTDOWN in cancel.args  # Router.drain cancels with this message
            if shutdown and turn.step is not None and turn.step.waiting:
                await asyncio.shield(self._suspend(turn))
                return
            await asyncio.shield(self._finish_cancelled(turn, shutdown=shutdown))
        except ProviderError as error:
            await self._finish_failed(turn, error)
        except Exception:
            log.exception("turn %s failed", record.id)
            await self._record_open_call(turn, "the turn failed inside the bot; tokens estimated", ok=False)
            await self._finish_failed(
                turn, ProviderError("something went wrong inside the bot"), "internal_error"
            )

    def _too_long(self, turn: _Turn, message: Message) -> str | None:
        budget = self.budget_for(turn.model)
        tokens = self._counter.count_message(message)
        limit = int(budget.input_tokens * 0.8)
        if tokens <= limit:
            return None
        return (
            f"Your message is too long for {turn.model}: about {plural(tokens, 'token')}, and I can take "
            f"about {limit:,}. Please shorten it or split it up."
        )

    async def _loop(self, turn: _Turn, paused: tuple[Message, list[ChoiceRecord]] | None = None) -> None:
        for step_number in range(1, self.config.max_steps + 1):
            choices: list[ChoiceRecord] = []
            if paused is not None:  # a resumed turn carries on in the step it waited in
                step, choices = _step_of(turn, paused[0]), paused[1]
                paused = None
            else:
                if step_number > 1 and await self._stopped_by_budget(turn):
                    return
                await self._fit_context(turn)
                if turn.text and not turn.text.endswith("\n\n") and step_number > 1:
                    turn.add_text("\n\n")  # separate the texts of consecutive steps
                turn.step_text = ""
                step = await self._model_step(turn)
            uses = [ToolUseBlock(c.id, c.name, c.input or {}) for c in step.tool_calls]
            blocks: list[Block] = [TextBlock(step.text)] if step.text else []
            assistant = Message("assistant", (*blocks, *uses))
            if not step.tool_calls:
                await self._finish(turn, [assistant] if blocks else [Message.assistant("(no answer)")])
                return
            turn.running_calls = step.tool_calls
            assert turn.step is not None
            results = await self._tool_step.run(turn.step, step.tool_calls, assistant, choices)
            await self._sessions.append(turn.state, [assistant, results])
            turn.running_calls = []
            turn.step_text = ""
        steps = plural(self.config.max_steps, "tool step")
        note = f"I stopped after {steps} (the step limit). Ask me to continue."
        turn.emit(Notice("step_limit", note))
        await self._finish(turn, [Message.assistant(note)])

    async def _stopped_by_budget(self, turn: _Turn) -> bool:
        """Between tool steps: if the budget ran out, end the turn with the reason as its last words."""
        refusal = await self._budget.refusal(turn.inbound) if self._budget else None
        if not refusal:
            return False
        turn.add_text(("\n\n" if turn.text else "") + refusal)
        await self._finish(turn, [Message.assistant(turn.text)])
        return True

    async def _finish(self, turn: _Turn, messages: list[Message]) -> None:
        await self._sessions.append(
            turn.state,
            messages,
            turn_id=turn.record.id,
            turn_status="done",
            answer=turn.text,
            model=str(turn.model),
        )
        footer = (
            cost_footer(turn.input_tokens, turn.output_tokens, turn.cost) if self.config.cost_footer else ""
        )
        turn.emit(TurnDone(turn.text, turn.input_tokens, turn.output_tokens, turn.cost, footer))

    async def _suspend(self, turn: _Turn) -> None:
        """Shutting down while the turn waits for an approval: the choice stays open and the turn stays
        running in the store, so the next start resumes it where it waits (the step is stored with the
        choice). The user is told; nothing is marked delivered."""
        await self._record_open_call(turn, "cancelled; tokens estimated")
        turn.emit(TurnFailed("suspended", SUSPENDED, turn.text))

    async def _finish_cancelled(self, turn: _Turn, *, shutdown: bool = False) -> None:
        await self._record_open_call(turn, "cancelled; tokens estimated")
        if turn.step is not None:
            await self._tool_step.stopped(turn.step)
        status: TurnStatus = "interrupted" if shutdown else "cancelled"
        if shutdown:
            marker = "[interrupted: the bot restarted]"
            closing = self._closing_messages(turn, marker, "interrupted by a restart")
            told = "Interrupted: I am restarting. What I wrote so far is kept; please ask again in a minute."
        else:
            closing = self._closing_messages(turn, "[stopped by the user]", "cancelled by the user")
            told = "Stopped."
        answer = final_with_note(turn.text, told)
        await self._sessions.append(
            turn.state, closing, turn_id=turn.record.id, turn_status=status, answer=answer
        )
        turn.emit(TurnFailed("cancelled", told, turn.text))

    async def _finish_failed(self, turn: _Turn, error: ProviderError, reason: str = "provider_error") -> None:
        cut = isinstance(error, StreamCutAfterOutput)
        message = (
            f"The answer was cut off ({error.message}). What you see so far is kept; ask me to continue."
            if cut
            else f"Sorry, I could not get an answer from the model: {error.message}"
        )
        closing = self._closing_messages(turn, "[answer cut off]", "the turn failed before the tool finished")
        answer = final_with_note(turn.text, message)
        await self._sessions.append(
            turn.state, closing, turn_id=turn.record.id, turn_status="failed", answer=answer
        )
        turn.emit(
            TurnFailed(
                "internal_error" if reason == "internal_error" else "provider_error", message, turn.text
            )
        )

    @staticmethod
    def _closing_messages(turn: _Turn, text_marker: str, tool_note: str) -> list[Message]:
        """Messages that close a turn that did not finish, keeping tool pairs valid."""
        closing: list[Message] = []
        if turn.running_calls:
            uses = tuple(ToolUseBlock(c.id, c.name, c.input or {}) for c in turn.running_calls)
            text = (TextBlock(turn.step_text),) if turn.step_text else ()
            closing.append(Message("assistant", (*text, *uses)))
            closing.append(
                Message("user", tuple(ToolResultBlock(c.id, tool_note, True) for c in turn.running_calls))
            )
            closing.append(Message.assistant(text_marker))
        else:
            closing.append(Message.assistant(f"{turn.step_text} {text_marker}".strip()))
        return closing

    def _models(self, turn: _Turn) -> list[ModelId]:
        fallback = self.config.fallback_model
        return [turn.model, fallback] if fallback and fallback != turn.model else [turn.model]

    def _request(self, turn: _Turn, model: ModelId) -> ProviderRequest:
        return ProviderRequest(
            model=model.name,
            system=self.config.system_prompt,
            messages=build_messages(turn.state),
            tools=self._tools.specs(),
            max_tokens=self.config.max_output_tokens,
        )

    async def _model_step(self, turn: _Turn) -> _Step:
        """One model call with retries and fallback. An attempt cut after its text streamed is retried
        too: its text is taken back (`TextReset`) and its tool calls dropped, so the step holds exactly
        what the attempt that completed sent. Tool calls are acted on only after the stream completed.
        Raises the last ProviderError (`StreamCutAfterOutput`, keeping the last attempt's text, if that
        attempt was cut after text) when every attempt failed."""
        step = _Step()
        models = self._models(turn)
        events = stream_with_failover(
            self._pool, models, lambda m: self._open_call(turn, m), self.config.retry, retry_after_text=True
        )
        async for event in events:
            if isinstance(event, AttemptFailed):
                await self._on_attempt_failed(turn, event, step)
            elif isinstance(event, Chunk):
                await self._on_chunk(turn, step, event)
        # A server that never reports usage (some OpenAI-compatible ones): the call still counts.
        await self._record_open_call(turn, "no usage reported; tokens estimated")
        step.text = turn.step_text
        return step

    def _open_call(self, turn: _Turn, model: ModelId) -> ProviderRequest:
        """The request of the next call, remembered as the call in flight (built just before sending)."""
        request = self._request(turn, model)
        turn.call = _Call(model, request)
        return request

    async def _on_chunk(self, turn: _Turn, step: _Step, event: Chunk) -> None:
        chunk = event.chunk
        call = turn.call
        if isinstance(chunk, TextChunk):
            if call is not None:
                call.output.append(chunk.text)
            turn.add_text(chunk.text)
        elif isinstance(chunk, ToolCallChunk):
            if call is not None:
                call.output.append(chunk.name + chunk.raw_arguments)
            step.tool_calls.append(chunk)
        elif isinstance(chunk, UsageChunk):
            await self._record_call(turn, event.model, chunk)
            if self._budget:
                await self._budget.after_call()
        elif isinstance(chunk, StopChunk):
            step.stop_reason = chunk.reason

    async def _record_call(
        self,
        turn: _Turn,
        model: ModelId,
        usage: UsageChunk,
        error: str = "",
        *,
        ok: bool | None = None,
        emit: bool = True,
    ) -> None:
        """Write the usage row of the call in flight and, with `emit` (a call of the answer, not of a
        summary), count it in the turn and emit its report. The write is shielded: a cancel arriving now
        (a /stop) must not lose the row, and the call is closed first so the cancel handler does not
        record it twice."""
        call, turn.call = turn.call, None
        latency = time.perf_counter() - call.started if call is not None else 0.0
        report = await asyncio.shield(
            self._usage.record(
                model=model,
                usage=usage,
                inbound=turn.inbound,
                session_id=turn.state.id,
                latency_s=latency,
                error=error,
                ok=ok,
            )
        )
        if not emit:
            return
        turn.input_tokens += usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
        turn.output_tokens += usage.output_tokens
        turn.cost = None if turn.cost is None or report.cost_usd is None else turn.cost + report.cost_usd
        turn.emit(report)

    async def _record_open_call(self, turn: _Turn, note: str, *, ok: bool = True, emit: bool = True) -> None:
        """Record the call in flight, if any, with estimated tokens: its input as sent and the output
        streamed so far (the provider reports usage only at the end of a stream). Never raises."""
        call = turn.call
        if call is None:
            return
        try:
            await self._record_call(turn, call.model, self._estimate(call), note, ok=ok, emit=emit)
        except Exception:  # the store is away: the turn must still close
            log.warning("could not record the usage of turn %s's last call", turn.record.id, exc_info=True)

    def _estimate(self, call: _Call) -> UsageChunk:
        request, count = call.request, self._counter.count_text
        tools = sum(
            count(t.name) + count(t.description) + count(json.dumps(t.input_schema)) for t in request.tools
        )
        sent = count(request.system) + tools + sum(self._counter.count_message(m) for m in request.messages)
        return UsageChunk(input_tokens=sent, output_tokens=count("".join(call.output)))

    async def _on_attempt_failed(self, turn: _Turn, event: AttemptFailed, step: _Step) -> None:
        # A failed attempt sent no usage chunk: it is recorded as a failed call with no tokens.
        await self._record_call(turn, event.model, UsageChunk(), event.error.message, emit=False)
        if event.next_step != "give_up":  # the next attempt streams the whole step again
            step.tool_calls.clear()
            step.stop_reason = ""
            if event.discarded_text:
                turn.discard_step_text()
        if event.next_step == "retry":
            turn.emit(
                Notice(
                    "retrying",
                    f"{event.model} failed ({event.error.message}); retrying in {event.delay_s:.1f}s",
                )
            )
        elif event.next_step == "fallback" and event.next_model:
            turn.emit(
                Notice("fallback", f"{event.model} failed ({event.error.message}); using {event.next_model}")
            )
            turn.model = event.next_model

    async def _fit_context(self, turn: _Turn) -> None:
        state = turn.state
        budget = self.budget_for(turn.model)
        if not needs_compaction(state, budget):
            return
        keep_from = split_point(state.history, int(budget.input_tokens * budget.keep_fraction))
        if keep_from <= 0:
            return  # only the current turn is left; nothing older to compact
        summary, by_model = await summarise(state, keep_from, lambda text: self._summarise(turn, text))
        tokens = self._counter.count_text(summary)
        through = state.history[keep_from - 1].id
        await self._store.compact(state.id, through, summary, tokens)
        self._sessions.apply_compaction(state, keep_from, summary, tokens)
        how = "summarised" if by_model else "removed (the summary failed)"
        turn.emit(
            Notice(
                "compacted", f"Earlier messages in this conversation were {how} to fit the model's context."
            )
        )

    async def _summarise(self, turn: _Turn, transcript: str) -> str:
        def request(model: ModelId) -> ProviderRequest:
            return ProviderRequest(model.name, SUMMARISE_INSTRUCTIONS, [Message.user(transcript)], (), 1024)

        def opened(model: ModelId) -> ProviderRequest:
            turn.call = _Call(model, request(model))
            return turn.call.request

        parts: list[str] = []
        events = stream_with_failover(
            self._pool, self._models(turn), opened, self.config.retry, retry_after_text=True
        )
        async for event in events:
            if isinstance(event, AttemptFailed):
                await self._record_call(turn, event.model, UsageChunk(), event.error.message, emit=False)
                if event.discarded_text:
                    parts.clear()  # the cut attempt's words are void; the retry starts over
            elif isinstance(event, Chunk) and isinstance(event.chunk, TextChunk):
                parts.append(event.chunk.text)
                if turn.call is not None:
                    turn.call.output.append(event.chunk.text)
            elif isinstance(event, Chunk) and isinstance(event.chunk, UsageChunk):
                await self._record_call(turn, event.model, event.chunk, emit=False)
        await self._record_open_call(turn, "no usage reported; tokens estimated", emit=False)
        return "".join(parts)


def _step_of(turn: _Turn, assistant: Message) -> _Step:
    """The paused step of a resumed turn, as if the model had just sent it (its text shown again)."""
    if assistant.text:
        turn.add_text(assistant.text)
    calls = [ToolCallChunk(u.id, u.name, u.input, json.dumps(u.input)) for u in assistant.tool_uses]
    return _Step(assistant.text, calls, "tool_use")


def cost_footer(input_tokens: int, output_tokens: int, cost: float | None) -> str:
    """The short line under an answer: `1,234 in · 56 out tokens · $0.0123`."""
    if not input_tokens and not output_tokens:
        return ""
    price = "cost unknown" if cost is None else format_cost(cost)
    return f"{input_tokens:,} in · {output_tokens:,} out tokens · {price}"


def final_with_note(text: str, note: str) -> str:
    """A turn that did not finish, as stored for delivery: what it wrote, then why it stopped."""
    return f"{text.rstrip()}\n\n_{note}_" if text.strip() else f"_{note}_"
