"""What an adapter hands the core: who said what, where."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from core.conversation import ImageBlock

DEFAULT_MAX_MESSAGE_CHARS = 32_000  # BOT_MAX_MESSAGE_CHARS: longer inbound text is cut to this

# What no store can keep: lone surrogates (invalid in UTF-8, refused by SQLite's and PostgreSQL's drivers)
# and NUL (PostgreSQL text cannot hold it). Each becomes U+FFFD, as a decoder does with bytes it cannot read.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


@dataclass(frozen=True, slots=True)
class ConversationRef:
    """Where a conversation lives. The session key is just these parts joined.

    `workspace` is a Slack team, a Discord guild or empty; `thread` is a thread ts, a Discord thread id,
    a Telegram reply-chain root or forum topic, or empty for a DM / the console.
    """

    platform: str
    workspace: str
    channel: str
    thread: str = ""

    @property
    def key(self) -> str:
        return "|".join(
            part.replace("|", "/") for part in (self.platform, self.workspace, self.channel, self.thread)
        )

    @staticmethod
    def from_key(key: str) -> ConversationRef:
        parts = key.split("|")
        if len(parts) != 4:
            raise ValueError(f"not a conversation key: {key!r}")
        return ConversationRef(*parts)


@dataclass(frozen=True, slots=True)
class Sender:
    id: str
    name: str = ""
    roles: tuple[str, ...] = ()  # platform roles / groups, for the access policy
    is_bot: bool = False


@dataclass(frozen=True, slots=True)
class InboundMessage:
    ref: ConversationRef
    sender: Sender
    text: str
    event_id: str  # platform-unique id used to handle a redelivered event once
    images: tuple[ImageBlock, ...] = field(default=())
    is_dm: bool = False
    # Where the answer goes, in the adapter's own terms (opaque to the core): stored with the turn, so
    # the adapter can rebuild the reply surface after a restart (`Adapter.surface_for`).
    reply_address: str = ""
    regenerates: int = 0  # a "regenerate" of this turn's answer (0: a new message)


def storable(text: str) -> str:
    """`text` with what cannot be stored replaced by U+FFFD; a valid surrogate pair (a str built from
    UTF-16 halves) is joined into its character. Returns `text` itself when it is already clean."""
    if _UNSTORABLE.search(text) is None:
        return text
    if "\x00" in text:
        text = text.replace("\x00", REPLACEMENT)
    # UTF-16 keeps the halves as they are (surrogatepass); decoding joins pairs and replaces lone halves.
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def storable_message(message: InboundMessage) -> InboundMessage:
    """`message` with every text field storable (see `storable`); the same object when nothing changed.
    Ids are cleaned too: a platform never sends such ids, but a forged payload must not break an insert."""
    ref, sender = message.ref, message.sender
    clean = replace(
        message,
        ref=ConversationRef(*(storable(p) for p in (ref.platform, ref.workspace, ref.channel, ref.thread))),
        sender=replace(sender, id=storable(sender.id), name=storable(sender.name)),
        text=storable(message.text),
        event_id=storable(message.event_id),
        reply_address=storable(message.reply_address),
    )
    return message if clean == message else clean


def cut_to(message: InboundMessage, max_chars: int) -> tuple[InboundMessage, int]:
    """`message` with its text cut to `max_chars` characters, and the length it had (0: not cut)."""
    if len(message.text) <= max_chars:
        return message, 0
    return replace(message, text=message.text[:max_chars]), len(message.text)
