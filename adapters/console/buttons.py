"""Buttons in a terminal: an approval card is answered by typing y / n / a, an answer's 👍 / 👎 row by a
"+" or "-" line right after it.

The surfaces (adapters/console/surface.py) tell the board what they show; the adapter asks it what a
typed line means and turns answers into `Click`s for `Router.click`. One board per console chat.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

from core.actions import ApprovalAction, Buttons, FeedbackAction, RegenerateAction, parse_action

CARD_PROMPT = "[y/N/a] "
CARD_HELP = "y = approve, n or Enter = deny, a = always allow here"
RATE_HINT = "+ / - to rate, /regenerate for another answer"
RETRY_HINT = "/regenerate to try again"
# What a line typed at a card means (Enter alone is the default: deny).
CARD_ANSWERS = {"y": "y", "yes": "y", "n": "n", "no": "n", "": "n", "a": "a", "always": "a"}
RATINGS = ("+", "-")


@dataclass
class Card:
    """An approval card as posted: its id (what `post` returned) and each answer's action."""

    message_id: str
    actions: dict[str, str]  # "y" / "n" / "a" -> the button's action
    text: str  # what the terminal last printed for it
    waiting: bool = True


def card_actions(buttons: Buttons | None) -> dict[str, str] | None:
    """The y / n / a actions of an approval card's row; None when the row is not one."""
    if buttons is None:
        return None
    actions: dict[str, str] = {}
    codes = {"approve": "y", "deny": "n", "always": "a"}
    for button in buttons.row:
        action = parse_action(button.action)
        if isinstance(action, ApprovalAction):
            actions[codes[action.option]] = button.action
    return actions or None


def answer_hint(buttons: Buttons) -> str:
    """The dim line under an answer that stands for its buttons ("" when none stands for them)."""
    actions = [parse_action(button.action) for button in buttons.row]
    if buttons.feedback or any(isinstance(a, FeedbackAction) for a in actions):
        return RATE_HINT
    if any(isinstance(a, RegenerateAction) for a in actions):
        return RETRY_HINT
    return ""


@dataclass
class Board:
    """What the console shows buttons for right now."""

    cards: OrderedDict[str, Card] = field(default_factory=OrderedDict)  # by message id, oldest first
    ratings: dict[str, str] = field(default_factory=dict)  # "+" / "-" -> action, for the last answer
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # set when a card starts waiting

    @staticmethod
    def new_id() -> str:
        # Unique across runs: the store keeps a card's id with its choice, past this process.
        return f"console:{uuid.uuid4().hex[:12]}"

    def card_posted(self, message_id: str, text: str, actions: dict[str, str]) -> None:
        self.cards[message_id] = Card(message_id, actions, text)
        self.changed.set()

    def card_edited(self, message_id: str, text: str, buttons: Buttons | None) -> bool:
        """Track an edit of a card; True when its text changed (worth printing again)."""
        card = self.cards.get(message_id)
        if card is None:
            return False
        actions = card_actions(buttons)
        card.waiting = actions is not None
        if actions is not None:
            card.actions = actions
        changed = text != card.text
        card.text = text
        if not card.waiting:
            del self.cards[message_id]  # decided: a line typed now is no answer to it
        return changed

    def waiting_card(self) -> Card | None:
        """The oldest card that still waits for its answer."""
        for card in self.cards.values():
            if card.waiting:
                return card
        self.changed.clear()
        return None

    def stopped(self) -> None:
        """The answer was stopped: its cards are being cancelled and no longer take an answer."""
        for card in self.cards.values():
            card.waiting = False
        self.changed.clear()

    def answer_shown(self, buttons: Buttons | None) -> None:
        """An answer ended with `buttons` (None: none): a "+" / "-" line right after it rates it."""
        self.ratings = {}
        if buttons is None:
            return
        for button in buttons.row:
            action = parse_action(button.action)
            if isinstance(action, FeedbackAction):
                self.ratings["+" if action.rating == "up" else "-"] = button.action

    def rating_for(self, line: str) -> str | None:
        """The rating action a line right after an answer stands for; any other line ends the offer (a
        rating keeps it: "-" after "+" changes the rating)."""
        action = self.ratings.get(line.strip())
        if action is None:
            self.ratings = {}
        return action
