"""Buttons: what a message offers to click, and a click as the core receives it.

One layer for every platform. The presenter attaches `Buttons` to a message through the surface
(`Surface.post` / `edit`, `AnswerStream.finish`); each adapter renders them in its idiom (Slack Block Kit,
Telegram inline keyboards, Discord components, a `[y/N]` prompt in the console) and hands a press back
as a `Click` (`Router.click`). `Button.action` is all a click brings back, so it names what was pressed
and on what: see `ApprovalAction`, `FeedbackAction`, `RegenerateAction`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from core.inbound import ConversationRef, Sender

# Telegram's callback_data holds 1-64 bytes; Discord's custom_id 100 characters; Slack's value 2,000.
MAX_ACTION_BYTES = 64

ButtonStyle = Literal["default", "primary", "danger"]
ApprovalOption = Literal["approve", "deny", "always"]
Rating = Literal["up", "down"]


@dataclass(frozen=True, slots=True)
class Button:
    action: str  # what a click on it brings back (`encode_action`), ASCII, at most MAX_ACTION_BYTES
    label: str  # plain text, short (Discord: 80 characters; Slack: 75)
    style: ButtonStyle = "default"


@dataclass(frozen=True, slots=True)
class Buttons:
    """A row of buttons under a message. `feedback`: the answer's own row (👍 / 👎 / regenerate), which a
    platform may render natively (Slack's feedback buttons) instead of as plain buttons."""

    row: tuple[Button, ...]
    feedback: bool = False


@dataclass(frozen=True, slots=True)
class Click:
    """A button pressed, as an adapter hands it to `Router.click`.

    `message_id` is the message the button is on, in the same form the surface returned it from `post`.
    `event_id` is the platform's id of this press (interaction id, callback query id): a press delivered
    twice counts once."""

    ref: ConversationRef
    sender: Sender
    action: str
    event_id: str
    message_id: str = ""
    is_dm: bool = False


@dataclass(frozen=True, slots=True)
class ClickReply:
    """What to tell the person who pressed, privately (a toast, an ephemeral message); "" = nothing,
    just acknowledge the press. `refused`: the press changed nothing (not theirs, expired, unknown)."""

    text: str = ""
    refused: bool = False


@dataclass(frozen=True, slots=True)
class ApprovalAction:
    choice_id: int
    option: ApprovalOption


@dataclass(frozen=True, slots=True)
class FeedbackAction:
    turn_id: int
    rating: Rating


@dataclass(frozen=True, slots=True)
class RegenerateAction:
    turn_id: int


Action = ApprovalAction | FeedbackAction | RegenerateAction

_APPROVAL_CODES: dict[ApprovalOption, str] = {"approve": "y", "deny": "n", "always": "a"}
_RATING_CODES: dict[Rating, str] = {"up": "+", "down": "-"}


def encode_action(action: Action) -> str:
    """`ap:12:y`, `fb:7:+`, `rg:7`: short enough for every platform's button payload."""
    if isinstance(action, ApprovalAction):
        return f"ap:{action.choice_id}:{_APPROVAL_CODES[action.option]}"
    if isinstance(action, FeedbackAction):
        return f"fb:{action.turn_id}:{_RATING_CODES[action.rating]}"
    return f"rg:{action.turn_id}"


def parse_action(text: str) -> Action | None:
    """The action a click brought back; None for anything we did not send (never raises)."""
    kind, _, rest = text.partition(":")
    number, _, code = rest.partition(":")
    if not number.isascii() or not number.isdigit() or len(number) > 18:
        return None
    ident = int(number)
    if kind == "ap":
        options = {v: k for k, v in _APPROVAL_CODES.items()}
        return ApprovalAction(ident, options[code]) if code in options else None
    if kind == "fb":
        ratings = {v: k for k, v in _RATING_CODES.items()}
        return FeedbackAction(ident, ratings[code]) if code in ratings else None
    if kind == "rg" and not code:
        return RegenerateAction(ident)
    return None


def approval_buttons(choice_id: int) -> Buttons:
    return Buttons(
        (
            Button(encode_action(ApprovalAction(choice_id, "approve")), "Approve", "primary"),
            Button(encode_action(ApprovalAction(choice_id, "deny")), "Deny", "danger"),
            Button(encode_action(ApprovalAction(choice_id, "always")), "Always allow here"),
        )
    )


def answer_buttons(turn_id: int) -> Buttons:
    return Buttons(
        (
            Button(encode_action(FeedbackAction(turn_id, "up")), "👍"),
            Button(encode_action(FeedbackAction(turn_id, "down")), "👎"),
            Button(encode_action(RegenerateAction(turn_id)), "🔄 Regenerate"),
        ),
        feedback=True,
    )
