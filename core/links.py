"""Message links: which conversation a platform message belongs to, when the platform does not say.

Telegram is the case: a reply in a group names only the message it answers, and Telegram does not nest
`reply_to_message`, so "this reply continues the conversation of that bot message" must be remembered.
Links are written to the store (so replies continue after a restart and on any replica) and cached in
memory (so the common case, a reply to a recent message, costs no query).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

from core.storage.base import Store

log = logging.getLogger(__name__)


class MessageLinks:
    def __init__(self, store: Store | None, capacity: int = 100_000) -> None:
        """`store` None: memory only (tests, tools that need no persistence)."""
        self._store = store
        self._cache: OrderedDict[tuple[str, str, str], str] = OrderedDict()
        self._capacity = capacity
        self._writes: set[asyncio.Task[None]] = set()

    def link(self, platform: str, chat: str, message_id: str, thread: str) -> None:
        """Remember a link now (memory) and in the store (in the background: losing one only means a
        reply to that message starts a new conversation)."""
        self._remember((platform, chat, message_id), thread)
        if self._store is None:
            return
        task = asyncio.get_running_loop().create_task(self._save(platform, chat, message_id, thread))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    def cached(self, platform: str, chat: str, message_id: str) -> str | None:
        """The link if it is in memory (no query)."""
        return self._cache.get((platform, chat, message_id))

    async def thread_of(self, platform: str, chat: str, message_id: str) -> str | None:
        key = (platform, chat, message_id)
        thread = self._cache.get(key)
        if thread is None and self._store is not None:
            try:
                thread = await self._store.linked_thread(platform, chat, message_id)
            except Exception:  # the database is away: treat the message as unlinked
                log.warning("could not look up the conversation of message %s", message_id, exc_info=True)
                return None
            if thread is not None:
                self._remember(key, thread)
        return thread

    async def flush(self) -> None:
        """Wait for links still being written (shutdown, tests)."""
        await asyncio.gather(*self._writes, return_exceptions=True)

    async def _save(self, platform: str, chat: str, message_id: str, thread: str) -> None:
        assert self._store is not None
        try:
            await self._store.link_message(platform, chat, message_id, thread)
        except Exception:
            log.warning("could not store the conversation of message %s", message_id, exc_info=True)

    def _remember(self, key: tuple[str, str, str], thread: str) -> None:
        self._cache[key] = thread
        self._cache.move_to_end(key)
        if len(self._cache) > self._capacity:
            self._cache.popitem(last=False)
