"""Callback queries (a press on an inline keyboard button) -> `Click` -> `Router.click` -> the answer.

A press names the message its button is on; the click's conversation is that message's, built the way
an inbound message there is (inbound.py): the private chat, the forum topic, or in a group the reply
chain the bot's message was linked to when it was sent (the message links, also after a restart and on
another replica). Every callback query is answered, with or without text: Telegram clients show a
spinner on the button until it is. The core's private reply becomes the answer's text, as an alert when
the press changed nothing (`refused`), else as a toast.

A press on a message Telegram no longer gives us (deleted, too old: `date` 0), or on a button without
data, is answered with a short note and goes no further.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from telegram import Bot, CallbackQuery, Message
from telegram.constants import ChatType
from telegram.error import TelegramError

from adapters.telegram.inbound import PLATFORM, ReplyChains
from adapters.telegram.keyboard import answer_text
from core.actions import Click, ClickReply
from core.inbound import ConversationRef, Sender

log = logging.getLogger(__name__)

GONE = "This message is no longer available; please ask me again."

# `Router.click` bound to the adapter's `surface_for`.
RouteClick = Callable[[Click], Awaitable[ClickReply]]


async def click_of(query: CallbackQuery, chains: ReplyChains) -> Click | None:
    """The press as the core sees it; None when it cannot count (no accessible message, no data)."""
    message = query.message
    if not isinstance(message, Message) or message.date.timestamp() == 0 or not query.data:
        return None
    user = query.from_user
    sender = Sender(str(user.id), user.full_name or user.username or str(user.id), is_bot=user.is_bot)
    chat_id = message.chat.id
    topic = message.message_thread_id if message.is_topic_message else None
    private = message.chat.type == ChatType.PRIVATE
    if private:
        thread = f"topic:{topic}" if topic else ""
    elif topic:
        thread = f"topic:{topic}"
    else:
        thread = await _chain_of(message, chains)
    ref = ConversationRef(PLATFORM, "", str(chat_id), thread)
    return Click(ref, sender, query.data, query.id, str(message.message_id), is_dm=private)


async def _chain_of(message: Message, chains: ReplyChains) -> str:
    """The reply chain of one of the bot's group messages: its link, else the question it replies to
    (which roots a chain it started), else the message itself."""
    chat_id = message.chat.id
    await chains.prefetch(chat_id, message.message_id)
    root = chains.known_root(chat_id, message.message_id)
    if root is not None:
        return root
    replied = message.reply_to_message
    return str(replied.message_id if replied is not None else message.message_id)


async def handle_press(bot: Bot, query: CallbackQuery, chains: ReplyChains, route: RouteClick) -> None:
    """Route one press and answer its callback query. Never raises."""
    try:
        click = await click_of(query, chains)
        reply = await route(click) if click is not None else ClickReply(GONE, refused=True)
    except Exception:
        log.exception("handling callback query %s failed", query.id)
        reply = ClickReply("Something went wrong on my side; please press it again.", refused=True)
    text = answer_text(reply.text)
    try:
        await bot.answer_callback_query(query.id, text=text, show_alert=bool(text) and reply.refused)
    except TelegramError as error:  # too old (Telegram waits ~15 s), or answered already
        log.info("could not answer callback query %s: %s", query.id, error.message)
