"""Who may talk to the bot, and who is an admin.

Entries are `platform:id` (e.g. `slack:U0123`, `telegram:42`, `discord:role:1234`) or a bare id that
applies on every platform. An empty allow list means everyone is allowed. Admins are always allowed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from core.inbound import InboundMessage


def _matches(entries: frozenset[str], platform: str, ident: str) -> bool:
    return f"{platform}:{ident}" in entries or ident in entries


@dataclass(frozen=True)
class AccessPolicy:
    allowed_users: frozenset[str] = frozenset()
    allowed_channels: frozenset[str] = frozenset()
    admins: frozenset[str] = frozenset()

    @staticmethod
    def build(users: Iterable[str], channels: Iterable[str], admins: Iterable[str]) -> AccessPolicy:
        def clean(items: Iterable[str]) -> frozenset[str]:
            return frozenset(i.strip() for i in items if i.strip())

        return AccessPolicy(clean(users), clean(channels), clean(admins))

    def is_admin(self, message: InboundMessage) -> bool:
        return _matches(self.admins, message.ref.platform, message.sender.id)

    def _user_allowed(self, message: InboundMessage) -> bool:
        if not self.allowed_users:
            return True
        platform = message.ref.platform
        if _matches(self.allowed_users, platform, message.sender.id):
            return True
        return any(_matches(self.allowed_users, platform, f"role:{role}") for role in message.sender.roles)

    def _channel_allowed(self, message: InboundMessage) -> bool:
        # DMs are governed by the user list alone; a channel list restricts shared spaces.
        if not self.allowed_channels or message.is_dm:
            return True
        ref = message.ref
        return _matches(self.allowed_channels, ref.platform, ref.channel) or (
            bool(ref.workspace)
            and _matches(self.allowed_channels, ref.platform, f"workspace:{ref.workspace}")
        )

    def refusal(self, message: InboundMessage) -> str | None:
        """None if the message may be answered, else the text to tell the sender."""
        if self.is_admin(message):
            return None
        platform = message.ref.platform
        if not self._user_allowed(message):
            return (
                "Sorry, you are not on this bot's allow list. "
                f"Ask an admin to add you (your id: {platform}:{message.sender.id})."
            )
        if not self._channel_allowed(message):
            return (
                "Sorry, I am not enabled in this channel. "
                f"Ask an admin to allow it (channel id: {platform}:{message.ref.channel})."
            )
        return None
