"""Discord events -> core InboundMessages: where a conversation lives, who is speaking, dedupe keys.

A conversation is a thread (ref thread = thread id, channel = its parent), a channel (thread empty; the
shared conversation of `/ask` there) or a DM (workspace empty). The event id is the interaction or
message snowflake: unique across Discord and stable across gateway redeliveries.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import discord

from core.conversation import ImageBlock
from core.inbound import ConversationRef, InboundMessage, Sender

PLATFORM = "discord"


@dataclass(frozen=True, slots=True)
class Place:
    """Where an event happened: its conversation, and the channel (or thread) to post in."""

    ref: ConversationRef
    channel_id: int
    is_dm: bool = False
    can_open_thread: bool = False  # a text/announcement channel, where threads start from messages


def place_of(channel: Any, guild_id: int | None, channel_id: int) -> Place:
    if isinstance(channel, discord.Thread):
        ref = ConversationRef(PLATFORM, str(guild_id or ""), str(channel.parent_id), str(channel.id))
        return Place(ref, channel.id)
    if guild_id is None or isinstance(channel, discord.DMChannel | discord.GroupChannel):
        return Place(ConversationRef(PLATFORM, "", str(channel_id)), channel_id, is_dm=True)
    ref = ConversationRef(PLATFORM, str(guild_id), str(channel_id))
    return Place(ref, channel_id, can_open_thread=isinstance(channel, discord.TextChannel))


def guild_id_of(message: discord.Message) -> int | None:
    """The guild a message was sent in, from its payload. For a guild the gateway has not described
    (yet), discord.py leaves `message.guild` None, but the channel it builds keeps the payload's
    `guild_id` (a PartialMessageable)."""
    if message.guild is not None:
        return message.guild.id
    guild_id = getattr(message.channel, "guild_id", None)
    return guild_id if isinstance(guild_id, int) else None


def is_direct(message: discord.Message) -> bool:
    """A DM only when the payload named no guild and discord.py built a private channel for it; when
    in doubt it is not a DM (DMs skip the channel allow list)."""
    private = isinstance(message.channel, discord.DMChannel | discord.GroupChannel)
    return private and guild_id_of(message) is None


def thread_place(parent: Place, thread_id: int) -> Place:
    """The conversation of a thread opened from a message in `parent` (thread id = message id)."""
    ref = ConversationRef(PLATFORM, parent.ref.workspace, parent.ref.channel, str(thread_id))
    return Place(ref, thread_id)


def sender_of(user: discord.User | discord.Member) -> Sender:
    # Role ids straight from the payload: the guild's role cache may be empty (interactions can come
    # from guilds the gateway has not described yet), but the ids are what the access policy matches.
    role_ids = getattr(user, "_roles", ())
    return Sender(str(user.id), user.display_name, tuple(str(r) for r in role_ids), is_bot=user.bot)


def inbound(
    place: Place,
    user: discord.User | discord.Member,
    text: str,
    event_id: int,
    images: tuple[ImageBlock, ...] = (),
    *,
    reply_address: str = "",
) -> InboundMessage:
    return InboundMessage(
        place.ref,
        sender_of(user),
        text,
        str(event_id),
        images=images,
        is_dm=place.is_dm,
        reply_address=reply_address,
    )


def strip_mention(text: str, bot_id: int) -> str:
    return re.sub(rf"<@!?{bot_id}>", "", text).strip()


class RecentIds:
    """A bounded memory of event ids already taken: a redelivered event is dropped before any REST call.
    The core's store remains the durable dedupe (across restarts)."""

    def __init__(self, size: int = 8192) -> None:
        self._size = size
        self._ids: OrderedDict[int, None] = OrderedDict()

    def first_time(self, event_id: int) -> bool:
        if event_id in self._ids:
            return False
        self._ids[event_id] = None
        if len(self._ids) > self._size:
            self._ids.popitem(last=False)
        return True
