"""Send, edit, delete and draft messages in one chat: Markdown -> Telegram HTML, plain-text fallback.

If Telegram refuses our entities (it should not: see format.py) the same text goes out as plain text
rather than failing the answer, with the same buttons. A message shows exactly the buttons of the last
call that wrote it: an edit without buttons sends no `reply_markup`, which removes the keyboard.
Link previews are off: a preview popping in and out while an answer is being edited makes the
message jump.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from telegram import Bot, LinkPreviewOptions, ReplyParameters
from telegram.constants import ParseMode
from telegram.error import BadRequest

from adapters.telegram.format import to_html, visible_length
from adapters.telegram.inbound import Target
from adapters.telegram.keyboard import inline_keyboard
from core.actions import Buttons

log = logging.getLogger(__name__)

MAX_CHARS = 4096  # Telegram's limit, counted after entity parsing
# Parts are cut from the Markdown source a little short of the limit: the HTML's visible text is almost
# never longer than its source, but indented list continuation lines can add a few characters.
SPLIT_CHARS = 4000
T = TypeVar("T")
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


def _entity_error(error: BadRequest) -> bool:
    text = error.message.lower()
    return "parse entities" in text or "entity" in text or "tag" in text


class Outbox:
    def __init__(self, bot: Bot, target: Target, on_sent: Callable[[int], None] | None = None) -> None:
        self._bot = bot
        self._target = target
        self._on_sent = on_sent  # learns every message id we send (reply chains in groups)

    @property
    def target(self) -> Target:
        return self._target

    async def send(self, markdown: str, buttons: Buttons | None = None) -> int:
        target = self._target
        keyboard = inline_keyboard(buttons)
        reply = (
            ReplyParameters(target.reply_to, allow_sending_without_reply=True)
            if target.reply_to is not None
            else None
        )

        async def call(text: str, mode: str | None) -> int:
            message = await self._bot.send_message(
                target.chat_id,
                text,
                parse_mode=mode,
                message_thread_id=target.thread_id,
                reply_parameters=reply,
                link_preview_options=_NO_PREVIEW,
                reply_markup=keyboard,
            )
            return message.message_id

        message_id = await self._formatted(markdown, call)
        if self._on_sent is not None:
            self._on_sent(message_id)
        return message_id

    async def edit(self, message_id: int, markdown: str, buttons: Buttons | None = None) -> None:
        keyboard = inline_keyboard(buttons)

        async def call(text: str, mode: str | None) -> None:
            try:
                await self._bot.edit_message_text(
                    text,
                    chat_id=self._target.chat_id,
                    message_id=message_id,
                    parse_mode=mode,
                    link_preview_options=_NO_PREVIEW,
                    reply_markup=keyboard,
                )
            except BadRequest as error:
                if "not modified" not in error.message.lower():
                    raise

        await self._formatted(markdown, call)

    async def draft(self, draft_id: int, markdown: str) -> None:
        async def call(text: str, mode: str | None) -> None:
            await self._bot.send_message_draft(
                self._target.chat_id,
                draft_id,
                text,
                message_thread_id=self._target.thread_id,
                parse_mode=mode,
            )

        await self._formatted(markdown, call)

    async def delete(self, message_id: int) -> None:
        try:
            await self._bot.delete_message(self._target.chat_id, message_id)
        except BadRequest as error:
            if "not found" not in error.message.lower():  # already gone: what we wanted
                raise

    async def typing(self) -> None:
        await self._bot.send_chat_action(
            self._target.chat_id, "typing", message_thread_id=self._target.thread_id
        )

    async def _formatted(self, markdown: str, call: Callable[[str, str | None], Awaitable[T]]) -> T:
        if not markdown.strip():
            markdown = "…"  # Telegram refuses empty text
        markup = to_html(markdown)
        if markup.strip() and visible_length(markup) <= MAX_CHARS:
            try:
                return await call(markup, ParseMode.HTML)
            except BadRequest as error:
                if not _entity_error(error):
                    raise
                log.warning("Telegram refused the formatting (%s); sending plain text", error.message)
        return await call(markdown, None)
