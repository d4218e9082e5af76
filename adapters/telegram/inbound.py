"""Telegram update -> core InboundMessage, plus where the answer goes.

Sessions: a private chat is one conversation. In groups the bot answers @mentions, replies to its own
messages and commands meant for it; each reply chain is its own conversation (keyed by the message
that started it), and a forum topic is one conversation as a whole.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from telegram import Message, MessageEntity, Update
from telegram.constants import ChatType

from core.commands import COMMANDS
from core.inbound import ConversationRef, InboundMessage, Sender
from core.links import MessageLinks

PLATFORM = "telegram"
_COMMAND = re.compile(r"^/([A-Za-z0-9_]{1,32})(?:@([A-Za-z0-9_]+))?(?:\s|$)")
_OUR_COMMANDS = frozenset(c.name for c in COMMANDS) | {"start"}


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how to answer: the chat, its forum topic, and the message to reply to (groups)."""

    chat_id: int
    thread_id: int | None = None  # message_thread_id of a forum topic
    reply_to: int | None = None  # in groups the answer replies to the question, so users can reply on
    private: bool = False

    def address(self) -> str:
        """This target as the message's `reply_address` (stored with the turn, see `from_address`)."""
        fields = {"chat": self.chat_id, "topic": self.thread_id, "reply_to": self.reply_to}
        return json.dumps(fields | {"private": self.private}, separators=(",", ":"))

    @staticmethod
    def from_address(address: str, ref: ConversationRef) -> Target:
        """The target a stored turn's answer goes to: its `reply_address`, or (turns stored without one)
        what its conversation says: the chat, a forum topic, or the message a reply chain started at."""
        if address:
            fields = json.loads(address)
            chat, private = int(fields["chat"]), bool(fields["private"])
            return Target(chat, fields.get("topic"), fields.get("reply_to"), private)
        chat_id = int(ref.channel)
        thread, topic, reply_to = ref.thread, None, None
        if thread.startswith("topic:"):
            topic = int(thread.removeprefix("topic:"))
        elif thread.isdigit():
            reply_to = int(thread)
        return Target(chat_id, topic, reply_to, private=chat_id > 0)


@dataclass(frozen=True, slots=True)
class Addressed:
    message: InboundMessage
    target: Target


@dataclass(frozen=True, slots=True)
class BotIdentity:
    id: int
    username: str


class ReplyChains:
    """Which conversation each of the bot's group messages belongs to, so a reply continues it.

    Telegram does not nest reply_to_message, so the chain root of an earlier message cannot be recovered
    from an update: the core's message links remember it (in memory, and in the store so a reply
    continues its conversation after a restart and on any replica). `prefetch` loads a link from the
    store before the (synchronous) parsing needs it.
    """

    def __init__(self, links: MessageLinks | None = None) -> None:
        self._links = links if links is not None else MessageLinks(None)

    def link(self, chat_id: int, message_id: int, root: str) -> None:
        self._links.link(PLATFORM, str(chat_id), str(message_id), root)

    async def prefetch(self, chat_id: int, message_id: int) -> None:
        await self._links.thread_of(PLATFORM, str(chat_id), str(message_id))

    def root_of(self, chat_id: int, message_id: int) -> str:
        return self.known_root(chat_id, message_id) or str(message_id)

    def known_root(self, chat_id: int, message_id: int) -> str | None:
        """The conversation a message belongs to, if linked (prefetched), else None."""
        return self._links.cached(PLATFORM, str(chat_id), str(message_id))


def parse_update(update: Update, me: BotIdentity, chains: ReplyChains) -> Addressed | None:
    """The message the bot should answer (its `reply_address` says where the answer goes), or None (not
    for us, from a bot, not a new message)."""
    addressed = _parse(update, me, chains)
    if addressed is None:
        return None
    message = replace(addressed.message, reply_address=addressed.target.address())
    return Addressed(message, addressed.target)


def _parse(update: Update, me: BotIdentity, chains: ReplyChains) -> Addressed | None:
    message = update.message
    if message is None or message.from_user is None or message.from_user.is_bot:
        return None  # edits, channel posts, service updates, other bots and our own echoes
    text = message.text or message.caption or ""
    user = message.from_user
    sender = Sender(str(user.id), user.full_name or user.username or str(user.id))
    chat_id = message.chat.id
    event_id = f"{chat_id}:{message.message_id}"
    topic = message.message_thread_id if message.is_topic_message else None
    if message.chat.type == ChatType.PRIVATE:
        ref = ConversationRef(PLATFORM, "", str(chat_id), f"topic:{topic}" if topic else "")
        target = Target(chat_id, topic, None, private=True)
        return Addressed(InboundMessage(ref, sender, text, event_id, is_dm=True), target)
    replied_to_bot = _replied_to_bot(message, me)
    command = _command_for_us(text, me)
    mentioned, text = _strip_mention(message, text, me)
    if command is False or not (command or mentioned or replied_to_bot):
        return None
    if topic:
        thread = f"topic:{topic}"
    elif replied_to_bot and message.reply_to_message is not None:
        thread = chains.root_of(chat_id, message.reply_to_message.message_id)
    else:
        thread = str(message.message_id)  # a new chain, rooted at this message
    ref = ConversationRef(PLATFORM, "", str(chat_id), thread)
    target = Target(chat_id, topic, message.message_id)
    return Addressed(InboundMessage(ref, sender, text.strip(), event_id), target)


def _replied_to_bot(message: Message, me: BotIdentity) -> bool:
    replied = message.reply_to_message
    if replied is None or replied.from_user is None or replied.from_user.id != me.id:
        return False
    # In a forum topic every message "replies" to the topic's creation message: not a real reply.
    return not (message.is_topic_message and replied.message_id == message.message_thread_id)


def _command_for_us(text: str, me: BotIdentity) -> bool | None:
    """True: a command for this bot; False: a command for another bot; None: not a command."""
    match = _COMMAND.match(text)
    if match is None:
        return None
    name, target = match.group(1), match.group(2)
    if target:
        return target.lower() == me.username.lower()
    # A bare /cmd in a group may be meant for any bot there: only take the commands we have.
    return name.lower() in _OUR_COMMANDS


def _strip_mention(message: Message, text: str, me: BotIdentity) -> tuple[bool, str]:
    """Whether the bot is @mentioned, and the text without the mention."""
    entities = message.entities if message.text else message.caption_entities
    handle = f"@{me.username}".lower()
    for entity, value in entity_values(text, entities):
        is_us = (entity.type == MessageEntity.MENTION and value.lower() == handle) or (
            entity.type == MessageEntity.TEXT_MENTION and entity.user is not None and entity.user.id == me.id
        )
        if is_us:
            return True, (text.replace(value, "", 1) if entity.type == MessageEntity.MENTION else text)
    return False, text


def entity_values(text: str, entities: Sequence[MessageEntity]) -> list[tuple[MessageEntity, str]]:
    """Each entity with the text it covers. Offsets count UTF-16 code units, as PTB's parse_entities
    does, but a lone surrogate in the text (which Telegram's JSON can carry as `\\ud800`) is one unit
    here instead of an encoding error that would lose the message."""
    units = text.encode("utf-16-le", "surrogatepass")
    found: list[tuple[MessageEntity, str]] = []
    for entity in entities:
        piece = units[entity.offset * 2 : (entity.offset + entity.length) * 2]
        found.append((entity, piece.decode("utf-16-le", "surrogatepass")))
    return found
