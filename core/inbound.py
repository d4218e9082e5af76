"""What an adapter hands the core: who said what, where."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.conversation import ImageBlock


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
