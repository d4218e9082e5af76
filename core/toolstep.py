"""One model step's tool calls: the policy decides, a person approves where it asks, the tools run
(concurrently, results in call order), and every call and decision goes into the audit table.

An approved call that acts runs at most once, whichever process resumes the turn: it is marked as
started in the store before it runs (`mark_choice_ran`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from core.approvals import ApprovalDesk, arguments_summary, card_text, decided_text
from core.conversation import Message, ToolResultBlock, message_to_json
from core.events import AgentEvent, ApprovalRequested, ApprovalResolved, ToolFinished, ToolStarted
from core.inbound import InboundMessage
from core.providers.base import ToolCallChunk
from core.storage.base import AuditDecision, AuditRecord, ChoiceRecord, Store, ToolCallRecord
from core.tools.base import ToolContext, ToolOutcome
from core.tools.registry import ToolRegistry

log = logging.getLogger(__name__)

RESTARTED_WHILE_RUNNING = (
    "The bot restarted while this tool was running, so it may or may not have finished; it was not run "
    "again. Tell the user to check."
)


@dataclass
class StepContext:
    """What the tool phase needs of its turn. `waiting`: the choices it waits on now (/stop cancels them)."""

    inbound: InboundMessage
    turn_id: int
    session_id: int
    emit: Callable[[AgentEvent], None]
    waiting: list[ChoiceRecord] = field(default_factory=list)


@dataclass
class _Call:
    call: ToolCallChunk
    asked_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    decision: AuditDecision = "allowed"
    decided_by: str = ""
    waited_s: float = 0.0


class ToolStep:
    def __init__(self, tools: ToolRegistry, store: Store, desk: ApprovalDesk | None) -> None:
        self._tools = tools
        self._store = store
        self._desk = desk

    async def run(
        self,
        ctx: StepContext,
        calls: Sequence[ToolCallChunk],
        assistant: Message,
        paused: Sequence[ChoiceRecord] = (),
    ) -> Message:
        """Run the step's calls; `paused`: the choices a resumed turn already has for them."""
        granted = await self._granted(ctx, calls)
        step_json = message_to_json(assistant)
        known = {choice.call_id: choice for choice in paused}

        async def one(call: ToolCallChunk) -> ToolResultBlock:
            return await self._one(ctx, _Call(call), granted, step_json, known.get(call.id))

        results = await asyncio.gather(*(one(c) for c in calls))
        return Message("user", tuple(results))

    async def _granted(self, ctx: StepContext, calls: Sequence[ToolCallChunk]) -> frozenset[str]:
        if self._desk is None or all(self._decide(ctx, c.name) != "ask" for c in calls):
            return frozenset()
        return await self._store.granted_tools(ctx.inbound.ref.key)

    def _decide(self, ctx: StepContext, name: str) -> str:
        tool = self._tools.get(name)
        if self._desk is None or tool is None:
            return "allow"  # an unknown tool is refused by the registry, with the list of real ones
        return self._desk.settings.policy.decide(name, tool.read_only, ctx.inbound.ref)

    async def _one(
        self,
        ctx: StepContext,
        entry: _Call,
        granted: frozenset[str],
        step_json: str,
        paused: ChoiceRecord | None,
    ) -> ToolResultBlock:
        call = entry.call
        decision = self._decide(ctx, call.name)
        if decision == "ask" and call.name in granted:
            decision, entry.decision = "allow", "always"
        outcome: ToolOutcome | None = None
        choice: ChoiceRecord | None = None
        if decision == "deny":
            entry.decision = "policy_denied"
            outcome = ToolOutcome(
                f"The bot's tool policy does not allow `{call.name}` here (BOT_TOOL_POLICY); it did not run.",
                True,
                0.0,
            )
        elif decision == "ask":
            choice, outcome = await self._approval(ctx, entry, step_json, paused)
        if outcome is None:
            outcome = await self._execute(ctx, call)
        if choice is not None and choice.status == "approved":
            ran = (
                f"failed: {outcome.output[:80]}" if outcome.is_error else f"ran in {outcome.duration_s:.1f}s"
            )
            ctx.emit(ApprovalResolved(choice.id, f"{decided_text(choice)} · {ran}"))
        await self._audit(ctx, entry, outcome)
        return ToolResultBlock(call.id, outcome.output, outcome.is_error)

    async def _approval(
        self, ctx: StepContext, entry: _Call, step_json: str, paused: ChoiceRecord | None
    ) -> tuple[ChoiceRecord, ToolOutcome | None]:
        """Ask and wait; the outcome when the call must not run (denied, expired, already ran)."""
        assert self._desk is not None
        call, sender = entry.call, ctx.inbound.sender
        arguments = call.input or {}
        choice = paused or await self._desk.open(
            ctx.turn_id, ctx.inbound.ref.key, call.id, call.name, arguments, step_json, sender.id
        )
        asker = sender.name or sender.id
        if choice.status == "pending":
            prompt = card_text(call.name, arguments, asker, choice.expires_at)
            ctx.emit(
                ApprovalRequested(
                    choice.id, call.id, call.name, arguments, prompt, choice.expires_at, choice.message_id
                )
            )
            started = time.perf_counter()
            ctx.waiting.append(choice)  # kept there if the wait is cancelled: a /stop or shutdown needs it
            choice = await self._desk.wait(choice)
            ctx.waiting[:] = [c for c in ctx.waiting if c.id != choice.id]
            entry.waited_s = time.perf_counter() - started
        entry.decided_by = choice.decided_by
        if choice.status == "approved":
            grants = await self._store.granted_tools(ctx.inbound.ref.key)
            entry.decision = "always" if call.name in grants else "approved"
            if await self._store.mark_choice_ran(choice.id, datetime.now(UTC)):
                return choice, None
            return choice, ToolOutcome(RESTARTED_WHILE_RUNNING, True, 0.0)
        if choice.status == "expired":
            ctx.emit(ApprovalResolved(choice.id, decided_text(choice)))
        entry.decision = "denied" if choice.status == "denied" else "expired"
        return choice, ToolOutcome(_not_run(choice), True, 0.0)

    async def _execute(self, ctx: StepContext, call: ToolCallChunk) -> ToolOutcome:
        ctx.emit(ToolStarted(call.id, call.name, call.input or {}))
        context = ToolContext(ctx.inbound.ref, ctx.inbound.sender.id)
        outcome = await self._tools.run(call.name, call.input, context)
        ctx.emit(ToolFinished(call.id, call.name, outcome.output, outcome.is_error, outcome.duration_s))
        await self._store.record_tool_call(
            ToolCallRecord(
                ts=datetime.now(UTC),
                session_id=ctx.session_id,
                platform=ctx.inbound.ref.platform,
                user_id=ctx.inbound.sender.id,
                tool=call.name,
                ok=not outcome.is_error,
                duration_ms=outcome.duration_s * 1000,
            )
        )
        return outcome

    async def _audit(self, ctx: StepContext, entry: _Call, outcome: ToolOutcome) -> None:
        ran = (
            entry.decision in ("allowed", "approved", "always") and outcome.output != RESTARTED_WHILE_RUNNING
        )
        record = AuditRecord(
            ts=entry.asked_at,
            platform=ctx.inbound.ref.platform,
            conversation_key=ctx.inbound.ref.key,
            turn_id=ctx.turn_id,
            asked_by=ctx.inbound.sender.id,
            tool=entry.call.name,
            arguments=arguments_summary(entry.call.input or {}),
            decision=entry.decision,
            decided_by=entry.decided_by,
            waited_ms=entry.waited_s * 1000,
            duration_ms=outcome.duration_s * 1000 if ran else 0.0,
            outcome=("error" if outcome.is_error else "ok") if ran else "not_run",
            detail=outcome.output[:200] if outcome.is_error else "",
        )
        try:
            await asyncio.shield(self._store.record_audit(record))
        except Exception:  # the answer goes on; the operator sees the gap in the logs
            log.warning("could not write the audit row of a %s call", entry.call.name, exc_info=True)

    async def stopped(self, ctx: StepContext) -> None:
        """The turn was stopped (/stop) while it waited: its choices are cancelled, their cards say so,
        and the audit says the calls did not run."""
        if self._desk is None or not ctx.waiting:
            return
        for choice in await self._desk.cancel(ctx.waiting):
            ctx.emit(ApprovalResolved(choice.id, decided_text(choice)))
            arguments = json.loads(choice.arguments) if choice.arguments else {}
            entry = _Call(ToolCallChunk(choice.call_id, choice.tool, arguments, json.dumps(arguments)))
            entry.decision = "cancelled"
            await self._audit(ctx, entry, ToolOutcome("stopped by the user", True, 0.0))
        ctx.waiting.clear()


def _not_run(choice: ChoiceRecord) -> str:
    who = choice.decided_by_name or choice.decided_by
    if choice.status == "denied":
        return f"{who} denied this call of `{choice.tool}`, so it did not run. Do not try it again unasked."
    return f"No one approved this call of `{choice.tool}` in time, so it did not run."
