"""Coordination between replicas sharing one PostgreSQL database.

Each process opens one extra connection (the "fleet connection") and keeps it for its whole life:

- On it, the process holds an advisory lock on its member number (drawn from the `fleet_members`
  sequence). A turn row records its owner's number, so "is the process that accepted this turn still
  alive?" is a lookup in pg_locks, and when a replica crashes the server drops its locks by itself.
- On it, the process takes a per-conversation advisory lock while a turn runs, so two replicas never
  run turns of one conversation at the same time. Advisory locks are per connection and re-entrant, so
  one connection can hold the locks of every conversation this process is running, and the process
  picks its one holder per conversation itself (its oldest waiting turn).
- It LISTENs on a channel on which a released conversation is announced, so a replica waiting for it
  wakes at once; a slow poll covers what a notification cannot (a holder that crashed).

Order: a turn runs only when no older turn of its conversation is still waiting (pending) in any live
replica, this one included, so messages are answered in the order their turns were stored, whichever
replicas took them. A turn never holds anything while it waits, so two replicas cannot wait for each
other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final

import asyncpg

log = logging.getLogger(__name__)

MEMBER_LOCK_CLASS: Final = 0x5EA8
CONVERSATION_LOCK_CLASS: Final = 0x5EA9
RELEASED_CHANNEL: Final = "bot_conversation_released"
STOP_CHANNEL: Final = "bot_stop_requested"  # payload: a conversation key
POLL_S: Final = 1.0  # how often a waiter re-checks without a notification

# Is the owner of turn `t` alive? Its member lock is held in this database.
OWNER_ALIVE_SQL: Final = f"""
EXISTS (
    SELECT 1 FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
      AND l.classid = {MEMBER_LOCK_CLASS} AND l.objid::BIGINT = t.owner
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
)"""

_END_STALE_MEMBER = """
SELECT pg_terminate_backend(pid) FROM pg_locks
WHERE locktype = 'advisory' AND classid = $1 AND objid = $2 AND objsubid = 2 AND pid <> pg_backend_pid()
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""

_RUNNING_ELSEWHERE = f"""
SELECT EXISTS (
    SELECT 1 FROM turns t
    WHERE t.conversation_key = $1 AND t.status = 'running' AND t.owner <> $2 AND {OWNER_ALIVE_SQL}
)"""

# One round trip: take the conversation's lock if it is free, then look for an older waiting turn.
# CASE evaluates its branches in order, so the lookup runs only once the lock is ours. Only *pending*
# older turns count: a turn runs while holding the conversation, so an older turn still marked
# "running" while we hold it is one whose replica failed to record its end, and must not hold the
# conversation back for good.
_NOT_LOCKED, _LOCKED, _LOCKED_BUT_OLDER_WAITING = 0, 1, 2
_TRY_LOCK = f"""
SELECT CASE
    WHEN NOT pg_try_advisory_lock($1, $2) THEN {_NOT_LOCKED}
    WHEN EXISTS (
        SELECT 1 FROM turns t
        WHERE t.conversation_key = $3 AND t.id < $4 AND t.status = 'pending'
          AND {OWNER_ALIVE_SQL}
    ) THEN {_LOCKED_BUT_OLDER_WAITING}
    ELSE {_LOCKED}
END"""

Connect = Callable[[], Awaitable[asyncpg.Connection]]


def conversation_slot(key: str) -> int:
    """A conversation's advisory lock key (a signed 32-bit int). Two keys sharing a slot only wait for
    each other, which is harmless."""
    value = zlib.crc32(key.encode())
    return value - 2**32 if value >= 2**31 else value


class Fleet:
    """This process's membership in the fleet: its member number, the fleet connection and the
    conversation locks it holds."""

    def __init__(
        self, connect: Connect, pool: asyncpg.Pool, stop_handlers: list[Callable[[str], object]]
    ) -> None:
        self._connect = connect
        self._pool = pool
        self._conn: asyncpg.Connection | None = None
        self._conn_lock = asyncio.Lock()  # one query at a time on the fleet connection
        self._slots: dict[int, _Slot] = {}  # slots this process holds or waits for
        self._reconnect: asyncio.Task[None] | None = None
        self._closing = False
        self.member = 0
        self._stop_handlers = stop_handlers  # the store's list: handlers added later are seen too

    async def start(self) -> None:
        self.member = int(await self._pool.fetchval("SELECT nextval('fleet_members')"))
        await self._attach()

    async def _attach(self) -> None:
        conn = await self._connect()
        try:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", MEMBER_LOCK_CLASS, self.member):
                # Our previous fleet connection is gone on our side but its server process still holds
                # the member lock: end it (the role may end its own sessions), then take the lock.
                await conn.execute(_END_STALE_MEMBER, MEMBER_LOCK_CLASS, self.member)
                await conn.execute("SELECT pg_advisory_lock($1, $2)", MEMBER_LOCK_CLASS, self.member)
            await conn.add_listener(RELEASED_CHANNEL, self._on_released)
            await conn.add_listener(STOP_CHANNEL, self._on_stop)
        except BaseException:
            conn.terminate()
            raise
        conn.add_termination_listener(self._on_lost)
        self._conn = conn

    @property
    def attached(self) -> bool:
        """Connected to the fleet (false while reconnecting after a lost connection)."""
        conn = self._conn
        if conn is not None and conn.is_closed():
            self._drop(conn)  # it died without telling us: reattach
        return self._conn is not None

    async def close(self) -> None:
        self._closing = True
        if self._reconnect is not None:
            self._reconnect.cancel()
        # Let a release still in flight (shielded from a cancelled turn) finish before the connection goes.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._conn_lock.acquire(), 5.0)
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            await conn.close()  # the server drops this process's member and conversation locks

    def _on_lost(self, conn: Any) -> None:
        if not self._closing and conn is self._conn:
            # Our locks are gone with the connection: another replica may now take over our conversations.
            log.error("lost the PostgreSQL fleet connection; reconnecting (member %d)", self.member)
            self._drop(conn)

    def _drop(self, conn: Any) -> None:
        """Give up an unusable fleet connection (the server releases its locks with it) and reattach."""
        if conn is self._conn:
            self._conn = None
        if not conn.is_closed():
            conn.terminate()
        if not self._closing and (self._reconnect is None or self._reconnect.done()):
            self._reconnect = asyncio.get_running_loop().create_task(self._reattach())

    async def _reattach(self) -> None:
        delay = 0.2
        while not self._closing:
            try:
                await self._attach()
                log.info("fleet connection restored (member %d)", self.member)
                return
            except Exception as error:  # the server may be restarting: keep trying
                log.warning("fleet reconnect failed (%s); retrying in %.1fs", type(error).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _on_released(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        slot_text, _, member = str(payload).partition(":")
        if member == str(self.member):
            return  # our own release: nobody in this process waits on the fleet for it
        try:
            slot = self._slots.get(int(slot_text))
        except ValueError:
            return
        if slot is not None:
            slot.wake_next()

    def _on_stop(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        for handler in self._stop_handlers:
            handler(str(payload))

    async def request_stop(self, key: str) -> bool:
        """Announce a stop for `key` if another live replica is running a turn of it."""
        if not await self._pool.fetchval(_RUNNING_ELSEWHERE, key, self.member):
            return False
        await self._pool.execute("SELECT pg_notify($1, $2)", STOP_CHANNEL, key)
        return True

    async def _fetch(self, sql: str, *args: Any) -> Any:
        async with self._conn_lock:
            conn = self._conn
            if conn is None or conn.is_closed():
                if conn is not None:
                    self._drop(conn)
                raise ConnectionError("the PostgreSQL fleet connection is down; reconnecting")
            try:
                return await conn.fetchval(sql, *args)
            except (OSError, asyncpg.InterfaceError, asyncpg.InternalClientError) as error:
                # The connection itself failed (not the statement): its locks cannot be trusted.
                self._drop(conn)
                raise ConnectionError("the PostgreSQL fleet connection failed; reconnecting") from error

    @asynccontextmanager
    async def hold(self, key: str, turn_id: int) -> AsyncIterator[None]:
        slot_key = conversation_slot(key)
        slot = self._slots.setdefault(slot_key, _Slot())
        wake = slot.waiters[turn_id] = asyncio.Event()
        try:
            await self._acquire(key, slot_key, turn_id, slot, wake)
        except BaseException:
            del slot.waiters[turn_id]
            slot.wake_next()  # if we were the oldest waiter, the next one may ask now
            self._forget(slot_key, slot)
            raise
        del slot.waiters[turn_id]
        try:
            yield
        finally:
            slot.held = False
            await self._release(slot_key)
            slot.wake_next()
            self._forget(slot_key, slot)

    async def _acquire(self, key: str, slot_key: int, turn_id: int, slot: _Slot, wake: asyncio.Event) -> None:
        # Within this process only the oldest waiting turn asks the server (the advisory lock is per
        # connection and re-entrant, so the process must pick its one holder itself); the server's
        # answer then says whether an older turn of the conversation waits anywhere, this process
        # included (one that has not reached this point yet).
        while True:
            wake.clear()
            if not slot.held and turn_id == min(slot.waiters):
                slot.held = True
                try:
                    outcome = await self._try_lock(key, slot_key, turn_id)
                except BaseException:
                    slot.held = False
                    raise
                if outcome == _LOCKED:
                    return
                slot.held = False
                if outcome == _LOCKED_BUT_OLDER_WAITING:
                    await self._release(slot_key)  # give way to the older turn (and wake its replica)
                if min(slot.waiters) != turn_id:
                    slot.wake_next()  # an older turn of this process arrived while we asked
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), POLL_S)

    def _forget(self, slot_key: int, slot: _Slot) -> None:
        if not slot.waiters and not slot.held and self._slots.get(slot_key) is slot:
            del self._slots[slot_key]

    async def _try_lock(self, key: str, slot: int, turn_id: int) -> int:
        # Shielded: if we are cancelled after the server granted the lock, it must still be released.
        attempt = asyncio.ensure_future(self._fetch(_TRY_LOCK, CONVERSATION_LOCK_CLASS, slot, key, turn_id))
        try:
            return int(await asyncio.shield(attempt))
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                if not attempt.cancelled() and await attempt != _NOT_LOCKED:
                    await self._release(slot)
            raise

    async def _release(self, slot: int) -> None:
        """Unlock the slot and announce it to the other replicas waiting for it."""
        try:
            await asyncio.shield(
                self._fetch(
                    "SELECT pg_advisory_unlock($1, $2), pg_notify($3, $4)",
                    *(CONVERSATION_LOCK_CLASS, slot, RELEASED_CHANNEL, f"{slot}:{self.member}"),
                )
            )
        except (ConnectionError, asyncpg.PostgresError):
            # The connection went away (and was dropped), and the server released the lock with it.
            log.warning("could not release conversation slot %d cleanly", slot, exc_info=True)


class _Slot:
    """A conversation slot as seen from this process: its holder, and the turns waiting for it."""

    def __init__(self) -> None:
        self.held = False
        self.waiters: dict[int, asyncio.Event] = {}  # turn id -> its wake-up

    def wake_next(self) -> None:
        if self.waiters:
            self.waiters[min(self.waiters)].set()
