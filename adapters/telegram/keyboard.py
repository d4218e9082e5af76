"""Buttons (core/actions.py) as Telegram inline keyboards, and a click's reply as a callback answer.

A `Buttons` row becomes one row of an `InlineKeyboardMarkup`, each button a callback button whose
`callback_data` is the button's action (at most 64 bytes, which `encode_action` guarantees). The answer's
feedback row (👍 / 👎 / regenerate) is plain callback buttons too: Telegram has no native feedback
widget. Button colours (`style`, Bot API 9.4) show on clients released after February 2026; older
clients ignore them.
"""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup
from telegram.constants import CallbackQueryLimit, KeyboardButtonStyle

from core.actions import Buttons, ButtonStyle

# Approve reads as "go" (green) and Deny as "stop" (red), as on Slack; "default" leaves the client's own.
_STYLES: dict[ButtonStyle, str | None] = {
    "primary": KeyboardButtonStyle.SUCCESS,
    "danger": KeyboardButtonStyle.DANGER,
    "default": None,
}
MAX_ANSWER_CHARS = CallbackQueryLimit.ANSWER_CALLBACK_QUERY_TEXT_LENGTH  # 200


def inline_keyboard(buttons: Buttons | None) -> InlineKeyboardMarkup | None:
    """The keyboard a message shows for `buttons`; None (no `reply_markup`) for no buttons, which on an
    edit removes the keyboard the message had."""
    if buttons is None or not buttons.row:
        return None
    row = [
        InlineKeyboardButton(button.label, callback_data=button.action, style=_STYLES[button.style])
        for button in buttons.row
    ]
    return InlineKeyboardMarkup([row])


def answer_text(markdown: str) -> str | None:
    """A click's private reply as a callback answer: plain text (a toast or an alert shows no
    formatting), at most 200 characters; None for no text."""
    text = " ".join(markdown.replace("`", "").replace("**", "").split())
    if not text:
        return None
    if len(text) > MAX_ANSWER_CHARS:
        text = text[: MAX_ANSWER_CHARS - 1].rstrip() + "…"
    return text
