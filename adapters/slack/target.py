"""Where one reply goes, and how that is stored with the turn (`InboundMessage.reply_address`)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from core.inbound import ConversationRef


@dataclass(frozen=True, slots=True)
class ReplyTarget:
    channel: str
    thread_ts: str  # the thread the reply goes to (a top-level message opens one under itself)
    user: str  # the person being answered (streams in channels and ephemeral replies need it)
    user_team: str
    is_dm: bool
    in_thread: bool = False  # the message was posted in an existing thread (ephemeral replies go there)

    def address(self) -> str:
        """This target as the reply address stored with the turn."""
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @staticmethod
    def from_address(ref: ConversationRef, address: str) -> ReplyTarget:
        """The target stored with a turn; for a turn stored without one, the best the ref tells."""
        fallback = ReplyTarget(
            ref.channel, ref.thread, "", ref.workspace, ref.channel.startswith("D"), in_thread=False
        )
        try:
            data: Any = json.loads(address) if address else None
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return fallback
        return ReplyTarget(
            channel=str(data.get("channel") or fallback.channel),
            thread_ts=str(data.get("thread_ts") or fallback.thread_ts),
            user=str(data.get("user") or ""),
            user_team=str(data.get("user_team") or fallback.user_team),
            is_dm=bool(data.get("is_dm", fallback.is_dm)),
            in_thread=bool(data.get("in_thread", False)),
        )
