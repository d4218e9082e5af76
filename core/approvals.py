"""Tool approvals: where a turn that waits for a person meets the click that answers it.

A call the policy sets to `ask` becomes a stored choice (it outlives this process) and an approval card;
the turn then waits here. A click (`Router.click`, in this process or another replica) decides the choice
in one conditional write, so exactly one click counts in the whole fleet; the waiter learns of it at
once when the click came to this process, else from the store (polled: approvals move at human speed).
A choice nobody answers expires; `/stop` cancels it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from core.access import AccessPolicy
from core.conversation import Message, message_from_json
from core.inbound import InboundMessage
from core.storage.base import ChoiceRecord, Store
from core.tools.policy import Approvers, ToolPolicy

log = logging.getLogger(__name__)

DEFAULT_APPROVAL_TIMEOUT_S = 600.0
POLL_S = 1.0  # how often a waiting turn looks for a decision made in another process


@dataclass(frozen=True)
class ApprovalSettings:
    policy: ToolPolicy = field(default_factory=ToolPolicy)
    approvers: Approvers = "asker_or_admins"
    timeout_s: float = DEFAULT_APPROVAL_TIMEOUT_S
    poll_s: float = POLL_S


def may_decide(
    settings: ApprovalSettings, access: AccessPolicy, choice: ChoiceRecord, who: InboundMessage
) -> bool:
    """The person who asked, or an admin, as BOT_APPROVERS says."""
    asker = who.sender.id == choice.requested_by
    admin = access.is_admin(who)
    if settings.approvers == "asker":
        return asker
    if settings.approvers == "admins":
        return admin
    return asker or admin


def arguments_summary(arguments: dict[str, Any], limit: int = 200) -> str:
    """`channel=C0123, text=Hello team…`: what a card and the audit show of a call's arguments."""
    parts = []
    for key, value in arguments.items():
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        parts.append(f"{key}={' '.join(str(shown).split())}")
    text = ", ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def card_text(tool: str, arguments: dict[str, Any], asker: str, expires_at: datetime) -> str:
    minutes = max(1, round((expires_at - datetime.now(UTC)).total_seconds() / 60))
    summary = arguments_summary(arguments, 300).replace("`", "'")
    lines = [
        f"🔐 **Approval needed**: I want to run `{tool}`",
        f"with `{summary}`" if summary else "with no arguments",
        f"Asked by {asker}. Approve within {minutes} min, or it will not run.",
    ]
    return "\n".join(lines)


def decided_text(choice: ChoiceRecord) -> str:
    """The card's line once the choice is decided (no buttons any more)."""
    who = choice.decided_by_name or choice.decided_by
    if choice.status == "approved":
        return f"✅ `{choice.tool}` approved by {who}"
    if choice.status == "denied":
        return f"🚫 `{choice.tool}` denied by {who}; it did not run"
    if choice.status == "expired":
        return f"⌛ `{choice.tool}` was not approved in time; it did not run"
    if choice.status == "cancelled":
        return f"⏹ `{choice.tool}` did not run: the answer was stopped"
    return f"`{choice.tool}` waits for approval"


class ApprovalDesk:
    """The choices this process waits on. One per process, shared by the agent and the router."""

    def __init__(self, store: Store, settings: ApprovalSettings | None = None) -> None:
        self._store = store
        self.settings = settings or ApprovalSettings()
        self._waiters: dict[int, asyncio.Future[ChoiceRecord]] = {}

    async def open(
        self,
        turn_id: int,
        key: str,
        call_id: str,
        tool: str,
        arguments: dict[str, Any],
        step: str,
        asker: str,
    ) -> ChoiceRecord:
        expires = datetime.now(UTC) + timedelta(seconds=self.settings.timeout_s)
        return await self._store.add_choice(
            turn_id, key, call_id, tool, json.dumps(arguments), step, asker, expires
        )

    async def wait(self, choice: ChoiceRecord) -> ChoiceRecord:
        """The choice once decided: approved, denied, expired (then stored so) or cancelled."""
        loop = asyncio.get_running_loop()
        waiter = self._waiters.setdefault(choice.id, loop.create_future())
        try:
            while choice.status == "pending":
                left = (choice.expires_at - datetime.now(UTC)).total_seconds()
                if left <= 0:
                    choice = await self._expire(choice)
                    break
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(waiter), min(left, self.settings.poll_s))
                choice = await self._store.get_choice(choice.id) or choice
            return choice
        finally:
            if self._waiters.get(choice.id) is waiter:
                del self._waiters[choice.id]

    async def _expire(self, choice: ChoiceRecord) -> ChoiceRecord:
        expired = await self._store.decide_choice(choice.id, "expired", "", "", datetime.now(UTC))
        if expired is not None:
            return expired
        return await self._store.get_choice(choice.id) or choice  # decided at the last moment

    async def cancel(self, choices: Sequence[ChoiceRecord]) -> list[ChoiceRecord]:
        """Cancel the still-pending choices (a /stop); returns the ones this call cancelled."""
        cancelled = []
        for choice in choices:
            done = await self._store.decide_choice(choice.id, "cancelled", "", "", datetime.now(UTC))
            if done is not None:
                cancelled.append(done)
        return cancelled

    def decided(self, choice: ChoiceRecord) -> None:
        """A click in this process decided `choice`: wake its waiter, if it waits here."""
        waiter = self._waiters.get(choice.id)
        if waiter is not None and not waiter.done():
            waiter.set_result(choice)

    async def paused_step(
        self, turn_id: int, history: Sequence[Message]
    ) -> tuple[Message, list[ChoiceRecord]] | None:
        """The model step an interrupted turn was paused in (waiting for, or just past, an approval) and
        its choices; None when the turn has none (or its step was already stored in `history`)."""
        choices = await self._store.turn_choices(turn_id)
        if not choices:
            return None
        stored_calls = {use.id for message in history for use in message.tool_uses}
        last_step = choices[-1].step
        step_choices = [c for c in choices if c.step == last_step]
        if any(c.call_id in stored_calls for c in step_choices):
            return None  # that step finished and was stored: nothing paused
        try:
            return message_from_json(last_step), step_choices
        except (ValueError, KeyError, TypeError):
            log.warning("turn %s: its paused step could not be read; not resumed from it", turn_id)
            return None
