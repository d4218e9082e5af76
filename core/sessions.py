"""Conversation reference -> session, one turn at a time per session.

A session's history is loaded from the store once and then kept in memory (bounded LRU), so preparing
a turn does not re-read or recount earlier turns. Every change goes to the store first. When the store
is shared with other processes (PostgreSQL replicas), a turn holds its conversation in the whole fleet
and checks the memory copy against the store before using it (one query), reloading it if another
replica moved the conversation on.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from core.conversation import Message, repair_tool_pairs
from core.inbound import ConversationRef
from core.locks import KeyedLocks
from core.storage.base import SessionRecord, Store, StoredMessage, TurnRecord, TurnStatus
from core.tokens import TokenCounter


@dataclass
class SessionState:
    record: SessionRecord
    history: list[StoredMessage]
    total_tokens: int = 0  # summary + live history
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # The summary as a user/assistant exchange, rebuilt only when the summary changes (keeps wire caches).
    summary_messages: tuple[Message, Message] | None = None
    # Kept in step with `history` by SessionManager, so preparing a turn never walks the whole history
    # to rebuild the message list or to check that roles alternate.
    message_list: list[Message] = field(default_factory=list)
    alternating: bool = True

    def __post_init__(self) -> None:
        self.reindex()

    @property
    def id(self) -> int:
        return self.record.id

    def messages(self) -> list[Message]:
        return list(self.message_list)

    def reindex(self) -> None:
        """Rebuild the derived fields after `history` was replaced."""
        self.message_list = [stored.message for stored in self.history]
        roles = [m.role for m in self.message_list]
        self.alternating = all(a != b for a, b in itertools.pairwise(roles))

    def replace(self, loaded: SessionState) -> None:
        """Take over a freshly loaded copy's contents (the object, and so its lock, stays the same)."""
        self.record, self.history, self.total_tokens = loaded.record, loaded.history, loaded.total_tokens
        self.summary_messages = None
        self.reindex()

    def last_message_id(self) -> int | None:
        return self.history[-1].id if self.history else None

    def remember(self, stored: StoredMessage) -> None:
        if self.message_list and self.message_list[-1].role == stored.message.role:
            self.alternating = False
        self.history.append(stored)
        self.message_list.append(stored.message)
        self.total_tokens += stored.tokens


class SessionManager:
    def __init__(self, store: Store, counter: TokenCounter, max_cached: int = 2_000) -> None:
        self._store = store
        self._counter = counter
        self._max_cached = max_cached
        self._states: OrderedDict[str, SessionState] = OrderedDict()
        self._loading = KeyedLocks()
        self._running: dict[str, asyncio.Task[None]] = {}
        store.on_stop_requested(self.cancel)  # `stop` sent to another replica

    async def get(self, ref: ConversationRef) -> SessionState:
        key = ref.key
        state = self._states.get(key)
        if state is not None:
            self._states.move_to_end(key)
            return state
        # One loader per key, so two messages arriving together share one state (and one lock).
        async with self._loading.hold(key):
            state = self._states.get(key)
            if state is None:
                state = await self._load(await self._store.current_session(ref))
                self._remember(key, state)
        return state

    async def _load(self, record: SessionRecord) -> SessionState:
        stored = await self._store.load_messages(record.id)
        messages = [s.message for s in stored]
        repaired = repair_tool_pairs(messages)
        if repaired != messages:
            # Defence in depth: history written by an older version or a partial crash is made valid.
            stored = [StoredMessage(-1, m, self._counter.count_message(m)) for m in repaired]
        for item in stored:
            item.message.cache["tokens"] = item.tokens
        total = record.summary_tokens + sum(s.tokens for s in stored)
        return SessionState(record, list(stored), total)

    @asynccontextmanager
    async def turn_slot(self, state: SessionState, turn: TurnRecord) -> AsyncIterator[None]:
        """Run `turn` alone in its conversation: first in the whole fleet (the store orders turns across
        replicas; a no-op for a single process), then in this process (`state.lock`, FIFO), with `state`
        checked against the store when it is shared."""
        async with self._store.hold_conversation(turn.ref.key, turn.id), state.lock:
            if self._store.shared:
                await self._refresh(state, turn.ref)
            yield

    async def _refresh(self, state: SessionState, ref: ConversationRef) -> None:
        head = await self._store.session_head(ref)
        if head.record == state.record and head.last_message_id == state.last_message_id():
            return
        state.replace(await self._load(head.record))

    def _remember(self, key: str, state: SessionState) -> None:
        self._states[key] = state
        while len(self._states) > self._max_cached:
            oldest_key, oldest = next(iter(self._states.items()))
            if oldest.lock.locked() or oldest_key in self._running:
                break  # never evict a session in use; the cache may overshoot briefly
            self._states.popitem(last=False)

    async def append(
        self,
        state: SessionState,
        messages: Sequence[Message],
        *,
        turn_id: int | None = None,
        turn_status: TurnStatus | None = None,
        answer: str | None = None,
        model: str | None = None,
    ) -> None:
        """Persist messages (atomically, with the turn's status, final `answer` and the `model` that wrote
        it), then add them to the in-memory history."""
        counted = [(m, await self._counter.count_message_async(m)) for m in messages]
        ids = await self._store.append_messages(
            state.id, counted, turn_id=turn_id, turn_status=turn_status, answer=answer, model=model
        )
        for (message, tokens), message_id in zip(counted, ids, strict=True):
            state.remember(StoredMessage(message_id, message, tokens))

    async def new_session(self, ref: ConversationRef) -> SessionState:
        record = await self._store.start_new_session(ref)
        state = SessionState(record, [], 0)
        self._states.pop(ref.key, None)
        self._remember(ref.key, state)
        return state

    async def set_model(self, ref: ConversationRef, model: str | None) -> None:
        state = await self.get(ref)
        await self._store.set_session_model(state.id, model)
        state.record = SessionRecord(
            state.record.id,
            ref,
            model,
            state.record.summary,
            state.record.summary_tokens,
            state.record.created_at,
        )

    async def rewind(self, state: SessionState, keep: int) -> int:
        """Take the live messages from index `keep` on out of the history (a regenerated answer replaces
        them); returns how many went."""
        if keep >= len(state.history):
            return 0
        first = state.history[keep].id
        dropped = await self._store.drop_messages_from(state.id, first)
        state.history = state.history[:keep]
        state.reindex()
        state.total_tokens = state.record.summary_tokens + sum(m.tokens for m in state.history)
        return dropped

    def apply_compaction(
        self, state: SessionState, keep_from: int, summary: str, summary_tokens: int
    ) -> None:
        """Update memory after the store compacted history[:keep_from] into `summary`."""
        record = state.record
        state.record = SessionRecord(
            record.id, record.ref, record.model, summary, summary_tokens, record.created_at
        )
        state.history = state.history[keep_from:]
        state.reindex()
        state.total_tokens = summary_tokens + sum(s.tokens for s in state.history)

    # Running turns, for `stop`.
    def set_running(self, key: str, task: asyncio.Task[None]) -> None:
        self._running[key] = task
        task.add_done_callback(
            lambda t: self._running.pop(key, None) if self._running.get(key) is t else None
        )

    def is_running(self, key: str) -> bool:
        return key in self._running

    async def stop_anywhere(self, key: str) -> bool:
        """Stop the conversation's running turn, here or in another replica; False if none runs."""
        return self.cancel(key) or await self._store.request_stop(key)

    def cancel(self, key: str) -> bool:
        task = self._running.get(key)
        if task is None or task.done():
            return False
        task.cancel()
        return True
