"""Which threads the bot takes part in, and what was said in a thread before the bot was mentioned.

Kept in a bounded in-memory map, refilled from conversations.replies after a restart, so a reply in a
thread the bot answered yesterday still continues the conversation without a new mention.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.client import error_code
from adapters.slack.inbound import is_from_bot

log = logging.getLogger(__name__)


class RecentKeys:
    """A bounded set of recently seen keys (oldest forgotten first)."""

    def __init__(self, capacity: int = 20_000) -> None:
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity

    def add(self, key: str) -> bool:
        """Remember `key`; False if it was already there."""
        if key in self._keys:
            self._keys.move_to_end(key)
            return False
        self._keys[key] = None
        if len(self._keys) > self._capacity:
            self._keys.popitem(last=False)
        return True


class ThreadTracker:
    def __init__(self, client: AsyncWebClient, capacity: int = 20_000) -> None:
        self._client = client
        self._member: OrderedDict[str, bool] = OrderedDict()
        self._capacity = capacity
        self.bot_user_id = ""

    def _remember(self, key: str, member: bool) -> None:
        self._member[key] = member
        self._member.move_to_end(key)
        if len(self._member) > self._capacity:
            self._member.popitem(last=False)

    def mark(self, channel: str, thread_ts: str) -> None:
        self._remember(f"{channel}:{thread_ts}", True)

    def known_member(self, channel: str, thread_ts: str) -> bool:
        return self._member.get(f"{channel}:{thread_ts}", False)

    async def lookup(self, channel: str, thread_ts: str) -> tuple[bool, list[Mapping[str, Any]]]:
        """(is the bot part of this thread, its latest messages). Asks Slack only for unknown threads."""
        key = f"{channel}:{thread_ts}"
        if self._member.get(key):
            return True, []
        try:
            response = await self._client.conversations_replies(
                channel=channel,
                ts=thread_ts,
                limit=200,  # oldest first: take the latest `limit` after
            )
        except SlackApiError as error:  # no history scope, not in channel: act as a newcomer
            log.info("could not read thread %s: %s", key, error_code(error))
            self._remember(key, False)
            return False, []
        except (aiohttp.ClientError, TimeoutError) as error:  # Slack unreachable: ask again next time
            log.info("could not read thread %s: %s", key, type(error).__name__)
            return False, []
        messages = [m for m in response.get("messages") or [] if isinstance(m, Mapping)]
        member = any(self._is_own(m) for m in messages)
        self._remember(key, member)
        return member, messages

    def _is_own(self, message: Mapping[str, Any]) -> bool:
        return is_from_bot(message) and message.get("user") == self.bot_user_id
