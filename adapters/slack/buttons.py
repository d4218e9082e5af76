"""Buttons in Slack's idiom: `Buttons` as Block Kit, a `block_actions` press back as the core's `Click`.

A row is an `actions` block of `button` elements (`value` = the button's action, `action_id` ours and
unique in the message). An answer's own row (`Buttons.feedback`) uses Slack's AI-app feedback element:
👍 / 👎 as `feedback_buttons` in a `context_actions` block, the other buttons (regenerate) as a plain
`actions` block under it (`context_actions` holds only feedback and icon buttons, and the only icon
Slack offers is a trash can). A press of either arrives as a `block_actions` payload whose action has
our `action_id` and the pressed button's `value`. Pure functions: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adapters.slack.inbound import PLATFORM
from core.actions import Button, Buttons, Click, FeedbackAction, parse_action
from core.inbound import ConversationRef, Sender

ACTION_PREFIX = "bot_"
# What the adapter's Bolt listener matches: every action_id this module writes.
ACTION_IDS = re.compile(rf"^{ACTION_PREFIX}")
FEEDBACK_ID = f"{ACTION_PREFIX}feedback"
MAX_LABEL = 75  # button text, feedback button text
MAX_VALUE = 2_000
MAX_BUTTONS = 25  # elements in one actions block
FEEDBACK_LABELS = {"up": "Good answer", "down": "Bad answer"}  # read by screen readers


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text[:MAX_LABEL] or "·", "emoji": True}


def _button(button: Button, index: int) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "button",
        "text": _plain(button.label),
        "action_id": f"{ACTION_PREFIX}action_{index}",
        "value": button.action[:MAX_VALUE],
    }
    if button.style != "default":  # Slack knows only primary and danger; no style is the default
        element["style"] = button.style
    return element


def _actions(buttons: tuple[Button, ...]) -> list[dict[str, Any]]:
    if not buttons:
        return []
    elements = [_button(button, i) for i, button in enumerate(buttons[:MAX_BUTTONS])]
    return [{"type": "actions", "elements": elements}]


def _feedback_pair(row: tuple[Button, ...]) -> tuple[Button, Button] | None:
    """The 👍 and 👎 buttons of an answer's row, if it has both."""
    found: dict[str, Button] = {}
    for button in row:
        action = parse_action(button.action)
        if isinstance(action, FeedbackAction):
            found.setdefault(action.rating, button)
    if "up" in found and "down" in found:
        return found["up"], found["down"]
    return None


def _feedback_half(button: Button, rating: str) -> dict[str, Any]:
    return {
        "text": _plain(button.label),
        "value": button.action[:MAX_VALUE],
        "accessibility_label": FEEDBACK_LABELS[rating],
    }


def button_blocks(buttons: Buttons | None) -> list[dict[str, Any]]:
    """The blocks that show `buttons` under a message ([] for none)."""
    if buttons is None or not buttons.row:
        return []
    pair = _feedback_pair(buttons.row) if buttons.feedback else None
    if pair is None:
        return _actions(buttons.row)
    up, down = pair
    feedback = {
        "type": "feedback_buttons",
        "action_id": FEEDBACK_ID,
        "positive_button": _feedback_half(up, "up"),
        "negative_button": _feedback_half(down, "down"),
    }
    rest = tuple(button for button in buttons.row if button not in pair)
    return [{"type": "context_actions", "elements": [feedback]}, *_actions(rest)]


def message_blocks(markdown: str, buttons: Buttons | None) -> list[dict[str, Any]]:
    """A message's Markdown as a `markdown` block (the form `markdown_text` takes, which cannot be
    combined with blocks), with `buttons` under it."""
    return [{"type": "markdown", "text": markdown}, *button_blocks(buttons)]


# --- presses -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Press:
    """A press of one of our buttons, and where to answer the presser privately."""

    click: Click
    channel: str
    user: str
    thread_ts: str | None  # the thread the pressed message is in (None: a top-level message)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _our_action(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    actions = body.get("actions")
    for action in actions if isinstance(actions, list) else []:
        if isinstance(action, dict) and _text(action.get("action_id")).startswith(ACTION_PREFIX):
            return action
    return None


def parse_press(body: Mapping[str, Any]) -> Press | None:
    """A `block_actions` payload on a message -> the core's Click; None when it is not a press of one
    of our buttons on a message (a view, an ephemeral without a message, a malformed payload)."""
    action = _our_action(body)
    user, container, message = (
        _dict(body.get("user")),
        _dict(body.get("container")),
        _dict(body.get("message")),
    )
    channel = _text(container.get("channel_id")) or _text(_dict(body.get("channel")).get("id"))
    message_ts = _text(container.get("message_ts")) or _text(message.get("ts"))
    user_id, value = _text(user.get("id")), _text(action.get("value")) if action else ""
    if not (action and channel and message_ts and user_id and value):
        return None
    thread_ts = _text(container.get("thread_ts")) or _text(message.get("thread_ts")) or None
    # The conversation as an inbound message there builds it: the thread root, a top-level message
    # being its own root (the bot always answers in a thread under the question), and the workspace
    # the bot is in (its own message's team; `team` may be the presser's in a shared channel).
    team = (
        _text(message.get("team")) or _text(_dict(body.get("team")).get("id")) or _text(user.get("team_id"))
    )
    ref = ConversationRef(PLATFORM, team, channel, thread_ts or message_ts)
    name = _text(user.get("name")) or _text(user.get("username"))
    # trigger_id is unique per interaction; action_ts + user identifies a press without one.
    event_id = _text(body.get("trigger_id")) or f"{_text(action.get('action_ts'))}:{user_id}"
    click = Click(ref, Sender(user_id, name), value, event_id, message_ts, is_dm=channel.startswith("D"))
    return Press(click, channel, user_id, thread_ts)
