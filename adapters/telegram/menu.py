"""The bot's command menu (setMyCommands): everyone's without the admin-only commands, and each admin's
private chat with them (a BotCommandScopeChat menu wins over the default one in that chat)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from telegram import Bot, BotCommand, BotCommandScope, BotCommandScopeChat
from telegram.error import TelegramError

from adapters.telegram.inbound import PLATFORM
from core.commands import COMMANDS

log = logging.getLogger(__name__)

# Commands only admins can use: kept out of everyone's menu, shown in each admin's private chat.
ADMIN_COMMANDS = frozenset(command.name for command in COMMANDS if command.admin_only)


def bot_commands(*, admin: bool = False) -> list[BotCommand]:
    """The command menu: everyone's, or (`admin`) with the admin-only commands too."""
    return [BotCommand("start", "Say hello and show what I can do")] + [
        BotCommand(command.name, command.summary)
        for command in COMMANDS
        if admin or command.name not in ADMIN_COMMANDS
    ]


def admin_chat_ids(admins: Iterable[str]) -> list[int]:
    """The private chats of the admins (ADMIN_USERS entries `telegram:42` or a bare `42`): in Telegram a
    user's private chat with the bot has the user's id."""
    ids: set[int] = set()
    for entry in admins:
        platform, _, ident = entry.strip().rpartition(":")
        if platform in ("", PLATFORM) and ident.isdigit() and int(ident) > 0:
            ids.add(int(ident))
    return sorted(ids)


async def register_menus(bot: Bot, admin_chats: Sequence[int]) -> None:
    """Everyone's menu, then each admin's. Never raises: typed commands work without a menu."""
    await _set_menu(bot, bot_commands(), None)
    for chat_id in admin_chats:
        await _set_menu(bot, bot_commands(admin=True), BotCommandScopeChat(chat_id))


async def _set_menu(bot: Bot, commands: list[BotCommand], scope: BotCommandScope | None) -> None:
    try:
        await bot.set_my_commands(commands, scope=scope)
    except TelegramError as error:
        if isinstance(scope, BotCommandScopeChat):  # e.g. "chat not found": never talked to the bot
            log.info(
                "could not set the admin command menu in chat %s (%s): it appears once that admin "
                "has started a chat with the bot and the bot restarted",
                scope.chat_id,
                error.message,
            )
        else:
            log.warning("could not register bot commands: %s", error.message)
