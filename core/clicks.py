"""A button press, answered: approvals decided, ratings kept, regenerations started.

Every press is claimed once by its platform id (a redelivered press does nothing) and checked like a
message (the access policy) before it counts; the press of someone who may not decide gets a private
refusal and changes nothing. An approval is decided in one conditional write, so of two presses (on one
replica or two) exactly one counts; the card is edited right away by whoever won.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial

from core import regenerate
from core.access import AccessPolicy
from core.actions import ApprovalAction, Click, ClickReply, FeedbackAction, RegenerateAction, parse_action
from core.approvals import ApprovalDesk, decided_text, may_decide
from core.delivery import FinalRetry, Pressure, deliver
from core.inbound import InboundMessage
from core.storage.base import ChoiceRecord, ChoiceStatus, Store, TurnRecord
from core.surface import DeliveryError, SurfaceFor

log = logging.getLogger(__name__)

NOT_MINE = "That button is not one I know (it may be from an older version of me)."
CARD_RETRY = FinalRetry(deadline_s=30.0)

# Starts a regenerated answer of a turn for the presser: the router's (it owns turns).
Regenerate = Callable[[TurnRecord, Click, SurfaceFor], Awaitable[ClickReply]]


class ClickDesk:
    def __init__(
        self,
        store: Store,
        access: AccessPolicy,
        approvals: ApprovalDesk | None,
        regenerate: Regenerate,
        pressure: Callable[[str], Pressure],
    ) -> None:
        self._pressure = pressure
        self._editing: set[asyncio.Task[None]] = set()
        self._store = store
        self._access = access
        self._approvals = approvals
        self._regenerate = regenerate

    async def handle(self, click: Click, surfaces: SurfaceFor) -> ClickReply:
        """Never raises: a failure is a private "try again"."""
        try:
            return await self._handle(click, surfaces)
        except Exception:
            log.exception("a button press (%s) failed", click.action[:20])
            return ClickReply("Something went wrong on my side; please press it again.", refused=True)

    async def _handle(self, click: Click, surfaces: SurfaceFor) -> ClickReply:
        action = parse_action(click.action)
        if action is None:
            return ClickReply(NOT_MINE, refused=True)
        who = InboundMessage(click.ref, click.sender, "", click.event_id, is_dm=click.is_dm)
        refusal = self._access.refusal(who)
        if refusal:
            return ClickReply(refusal, refused=True)
        if not await self._store.claim_event(click.ref.platform, f"click:{click.event_id}"):
            return ClickReply()  # the same press delivered again
        if isinstance(action, ApprovalAction):
            return await self._approval(action, click, who, surfaces)
        turn = await self._store.get_turn(action.turn_id)
        if turn is None:
            return ClickReply("I no longer know that answer.", refused=True)
        if isinstance(action, FeedbackAction):
            rating = 1 if action.rating == "up" else -1
            await self._store.rate_answer(turn.id, click.sender.id, rating, datetime.now(UTC))
            if rating > 0:
                return ClickReply("Thanks for the 👍, noted.")
            return ClickReply("Thanks, noted 👎. Tell me in a reply what was wrong and I will try again.")
        assert isinstance(action, RegenerateAction)
        if not regenerate.may_regenerate(turn, who, self._access):
            return ClickReply(regenerate.NOT_YOURS, refused=True)
        return await self._regenerate(turn, click, surfaces)

    async def _approval(
        self, action: ApprovalAction, click: Click, who: InboundMessage, surfaces: SurfaceFor
    ) -> ClickReply:
        choice = await self._store.get_choice(action.choice_id)
        if choice is None or self._approvals is None:
            return ClickReply("I no longer know that approval request.", refused=True)
        if not may_decide(self._approvals.settings, self._access, choice, who):
            return ClickReply(self._who_may(choice), refused=True)
        if choice.status != "pending":
            return ClickReply(f"Already decided: {_plain(decided_text(choice))}.", refused=True)
        now = datetime.now(UTC)
        status: ChoiceStatus = "denied" if action.option == "deny" else "approved"
        name = click.sender.name or click.sender.id
        decided = await self._store.decide_choice(choice.id, status, click.sender.id, name, now)
        if decided is None:  # someone else was first, or it expired just now
            decided = await self._store.get_choice(choice.id) or choice
            if decided.status == "pending":  # past its expiry, not yet marked: the waiter will
                return ClickReply("This approval request has expired; the call did not run.", refused=True)
            return ClickReply(f"Already decided: {_plain(decided_text(decided))}.", refused=True)
        if action.option == "always":
            await self._store.grant_tool(choice.conversation_key, choice.tool, click.sender.id)
        self._approvals.decided(decided)
        # In the background: the press must be answered at once (Telegram drops a late answer), and the
        # card's edit may wait out a 429.
        task = asyncio.create_task(self._show_decision(decided, action, click, surfaces))
        self._editing.add(task)
        task.add_done_callback(self._editing.discard)
        if status == "denied":
            return ClickReply(f"Denied: `{choice.tool}` will not run.")
        if action.option == "always":
            return ClickReply(f"Approved: `{choice.tool}` runs now, and without asking here from now on.")
        return ClickReply(f"Approved: `{choice.tool}` runs now.")

    def _who_may(self, choice: ChoiceRecord) -> str:
        assert self._approvals is not None
        approvers = self._approvals.settings.approvers
        if approvers == "admins":
            return "Only an admin can decide this approval request."
        if approvers == "asker":
            return "Only the person who asked can decide this approval request."
        return "Only the person who asked, or an admin, can decide this approval request."

    async def _show_decision(
        self, choice: ChoiceRecord, action: ApprovalAction, click: Click, surfaces: SurfaceFor
    ) -> None:
        """Edit the card now (the waiting turn may be in another process, or just restarting)."""
        # The pressed card, and the one the choice records if that is another (a card posted again by
        # a process that restarted before it could record the first one).
        cards = {m for m in (click.message_id, choice.message_id) if m}
        turn = await self._store.get_turn(choice.turn_id)
        if not cards or turn is None:
            return
        text = decided_text(choice)
        if action.option == "always":
            text += " · allowed in this conversation from now on"
        if choice.status == "approved":
            text += " · running…"
        surface = surfaces(turn.ref, turn.reply_address)
        for message_id in sorted(cards):
            try:
                edit = partial(surface.edit, message_id, text, None)
                await deliver(edit, "approval card", CARD_RETRY, self._pressure(turn.ref.platform))
            except DeliveryError as error:
                log.info("could not update the card of choice %s: %s", choice.id, error)


def _plain(text: str) -> str:
    """A card line as a short private reply (no emoji prefix, no code marks)."""
    return text.split(" ", 1)[-1].replace("`", "")
