"""Regenerate: the latest answer of a conversation written again, as a new version.

History keeps the chosen version only: when the regenerated turn runs, the question and answer of the
turn it replaces are taken out of the live history (kept in the store, marked like compacted messages)
and the question is asked again. Only the conversation's latest turn can be regenerated, and only once
it has ended; usage rows of the new answer are marked as a regeneration.
"""

from __future__ import annotations

from core.access import AccessPolicy
from core.inbound import InboundMessage
from core.sessions import SessionManager, SessionState
from core.storage.base import Store, TurnRecord

NEWEST = 2**62  # above any turn id: `turn_before(key, NEWEST)` is the conversation's latest turn
NOT_LATEST = "Only the latest answer in a conversation can be regenerated."
NOTHING = "There is no answer here to regenerate yet."
NOT_DONE = "That answer is still being written; regenerate it once it is done."
RESET = "This conversation was started afresh (/new) since that answer, so it cannot be regenerated."
NOT_YOURS = "Only the person who asked, or an admin, can regenerate this answer."
COMMAND_NAMES = ("regenerate", "retry")


def may_regenerate(turn: TurnRecord, who: InboundMessage, access: AccessPolicy) -> bool:
    """The person who asked, or an admin (the button and the command alike)."""
    return who.sender.id == turn.sender_id or access.is_admin(who)


async def refusal(store: Store, sessions: SessionManager, turn: TurnRecord | None) -> str | None:
    """Why `turn` cannot be regenerated now (None: it can)."""
    if turn is None:
        return NOTHING
    latest = await store.turn_before(turn.ref.key, NEWEST)
    if latest is None or latest.id != turn.id:
        return NOT_LATEST
    if turn.status in ("pending", "running"):
        return NOT_DONE
    state = await sessions.get(turn.ref)
    if state.id != turn.session_id:
        return RESET
    return None


async def rewind(store: Store, sessions: SessionManager, state: SessionState, turn: TurnRecord) -> str | None:
    """Before regenerated turn `turn` runs (in its conversation's slot): take the replaced turn out of
    the history. Returns why it cannot run (something else happened in between), else None."""
    previous = await store.turn_before(turn.ref.key, turn.id)
    if previous is None or previous.id != turn.regenerates or previous.session_id != state.id:
        return NOT_LATEST
    questions = [
        index
        for index, stored in enumerate(state.history)
        if stored.message.role == "user" and not stored.message.tool_results
    ]
    if not questions or state.history[questions[-1]].id < 0:
        return NOT_LATEST  # nothing stored to replace (compacted away, or repaired in memory only)
    await sessions.rewind(state, questions[-1])
    return None
