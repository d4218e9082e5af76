"""Where a turn's answer goes on Discord, as the JSON stored with the turn (`InboundMessage.reply_address`).

It holds what a reply surface needs without the event that started the turn, so the answer can be
delivered after a restart, possibly by another replica: the channel (or DM, or existing thread) to post
in, the asker's message (private replies answer it), an interaction's response message (the answer
replaces its "thinking…"; the interaction token is never stored: it dies within 15 minutes, and channel
routes reach the message), and the thread to open on the first public reply.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from core.inbound import ConversationRef


@dataclass(frozen=True, slots=True)
class ThreadPlan:
    """A thread to open from a message on the first public reply (its id is the message's)."""

    channel_id: int  # the channel it opens in
    message_id: int  # the message it starts from; the thread gets this id
    name: str
    starter: str = ""  # /chat: the text the start message (the interaction's response) shows first


@dataclass(frozen=True, slots=True)
class ReplyAddress:
    channel: int  # where replies are posted: a channel, a DM, an existing thread (or a thread's parent)
    reply_to: int | None = None  # the asker's message: private replies in a channel reference it
    original: int | None = None  # an interaction's response message: the first post replaces it
    thread: ThreadPlan | None = None

    def dumps(self) -> str:
        data: dict[str, Any] = {"channel": str(self.channel)}
        if self.reply_to is not None:
            data["reply_to"] = str(self.reply_to)
        if self.original is not None:
            data["original"] = str(self.original)
        if self.thread is not None:
            data["thread"] = {
                "channel": str(self.thread.channel_id),
                "from": str(self.thread.message_id),
                "name": self.thread.name,
            } | ({"starter": self.thread.starter} if self.thread.starter else {})
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))

    @staticmethod
    def loads(text: str, ref: ConversationRef) -> ReplyAddress:
        """The stored address; for one that is missing or unreadable (a turn stored by an older version),
        the conversation's own thread or channel."""
        try:
            data = json.loads(text)
            thread = data.get("thread")
            return ReplyAddress(
                int(data["channel"]),
                _snowflake(data.get("reply_to")),
                _snowflake(data.get("original")),
                None
                if not thread
                else ThreadPlan(
                    int(thread["channel"]),
                    int(thread["from"]),
                    str(thread["name"]),
                    str(thread.get("starter", "")),
                ),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return ReplyAddress(int(ref.thread or ref.channel))


def _snowflake(value: Any) -> int | None:
    return None if value is None else int(value)
