"""Inline keyboards and callback queries for the fake Bot API (tests/fakes/telegram_server.py).

`reply_markup` is validated as Telegram does for the inline keyboards the adapter sends (an
`inline_keyboard` array of button rows; each button has a non-empty `text` and exactly one action
field; `callback_data` is 1-64 bytes; `style` one of Bot API 9.4's). A press becomes a `callback_query`
update shaped as Telegram sends it: `id` (a numeric string), `from`, `message` (the whole message, its
`reply_markup` included; `{"chat", "message_id", "date": 0}` when it is no longer accessible),
`chat_instance` and `data`. Each query can be answered once, with at most 200 characters of text.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from tests.fakes.telegram_files import bad_request

Keyboard = list[list[dict[str, Any]]]

MAX_CALLBACK_DATA = 64  # bytes
MAX_ANSWER_TEXT = 200
_ACTION_FIELDS = (
    "url", "callback_data", "web_app", "login_url", "switch_inline_query", "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat", "copy_text", "callback_game", "pay",
)  # fmt: skip
_STYLES = {"primary", "success", "danger"}
_BAD_BUTTON = "can't parse inline keyboard button"
TOO_OLD = "query is too old and response timeout expired or query ID is invalid"


def parse_keyboard(params: dict[str, Any]) -> Keyboard | None:
    """The inline keyboard a sendMessage/editMessageText call asks for (None: no `reply_markup`), or the
    ApiError Telegram answers for a malformed one."""
    markup = params.get("reply_markup")
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise bad_request("can't parse reply keyboard markup JSON object")
    rows = markup.get("inline_keyboard")
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise bad_request('can\'t parse inline keyboard markup: field "inline_keyboard" must be an Array')
    for row in rows:
        for button in row:
            _check_button(button)
    return [list(row) for row in rows if row] or None  # an empty keyboard shows none


def _check_button(button: Any) -> None:
    if not isinstance(button, dict):
        raise bad_request(f"{_BAD_BUTTON}: InlineKeyboardButton must be an Object")
    text = button.get("text")
    if not isinstance(text, str) or not text.strip():
        raise bad_request("BUTTON_TEXT_INVALID")
    actions = [name for name in _ACTION_FIELDS if name in button]
    if not actions:
        raise bad_request(
            "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
        )
    if len(actions) > 1:
        raise bad_request(
            "can't parse inline keyboard button: exactly one of the optional fields must be used"
        )
    data = button.get("callback_data")
    if "callback_data" in button and (
        not isinstance(data, str) or not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA
    ):
        raise bad_request("BUTTON_DATA_INVALID")
    style = button.get("style")
    if style is not None and style not in _STYLES:
        raise bad_request(f"{_BAD_BUTTON}: unsupported button style")


def find_button(keyboard: Keyboard | None, label: str | None, action: str | None) -> dict[str, Any]:
    """The button a user can press: by its label (exact, or a prefix) or by its callback_data."""
    for button in itertools.chain.from_iterable(keyboard or []):
        if action is not None and button.get("callback_data") == action:
            return button
        if label is not None and str(button["text"]).startswith(label):
            return button
    shown = [(b["text"], b.get("callback_data")) for b in itertools.chain.from_iterable(keyboard or [])]
    raise AssertionError(f"no button {label or action!r} on the message; it shows {shown}")


@dataclass
class CallbackAnswer:
    query_id: str
    text: str
    show_alert: bool


class CallbackQueries:
    """Queries handed to the bot and their answers (each answerable once, as on Telegram)."""

    def __init__(self) -> None:
        self._ids = itertools.count(4_382_000_000_000_000_001)
        self.open: set[str] = set()
        self.answers: dict[str, CallbackAnswer] = {}

    def update(
        self, user: dict[str, Any], message: dict[str, Any], data: str, chat_id: int
    ) -> dict[str, Any]:
        """The `callback_query` payload of a press (the update's body without `update_id`)."""
        query_id = str(next(self._ids))
        self.open.add(query_id)
        query = {
            "id": query_id,
            "from": user,
            "message": message,
            "chat_instance": str(-(abs(chat_id) * 7919 % 10**18)),  # stable per chat, like Telegram's
            "data": data,
        }
        return {"callback_query": query}

    def answer(self, params: dict[str, Any]) -> bool:
        query_id = str(params.get("callback_query_id") or "")
        if query_id not in self.open:
            raise bad_request(TOO_OLD)
        text = params.get("text")
        text = "" if text is None else str(text)
        if len(text) > MAX_ANSWER_TEXT:
            raise bad_request("MESSAGE_TOO_LONG")
        alert = params.get("show_alert")
        if alert not in (None, True, False):
            raise bad_request("can't parse show_alert")
        self.open.discard(query_id)
        self.answers[query_id] = CallbackAnswer(query_id, text, bool(alert))
        return True
