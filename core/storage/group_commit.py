"""Group commit for SQLite: writes from many coroutines share one transaction and one thread hop.

Every aiosqlite call is a round trip to its worker thread (~100 µs here), so a turn's few small writes
cost more in hops than in SQLite. The batcher queues write operations (plain functions of a sqlite3
connection), runs everything queued in one call on aiosqlite's thread inside one transaction, and
resolves each caller's future. Each operation runs under its own SAVEPOINT, so one failing operation
rolls back only itself. Under load (hundreds of conversations at once) batches grow and the per-write
cost falls; alone, a write costs one hop instead of four.

Because a whole transaction runs inside one call on the database thread, reads issued through the
same aiosqlite connection can never observe half of it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

import aiosqlite

T = TypeVar("T")
WriteOp = Callable[[sqlite3.Connection], Any]
_Outcome = tuple[bool, Any]  # (succeeded, value or exception)

MAX_BATCH = 512


def run_batch(conn: sqlite3.Connection, ops: list[WriteOp]) -> list[_Outcome]:
    """Runs on the database thread: one transaction, one savepoint per operation."""
    outcomes: list[_Outcome] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for op in ops:
            conn.execute("SAVEPOINT op")
            try:
                value = op(conn)
            except Exception as error:  # the caller gets it; the others in the batch still commit
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                outcomes.append((False, error))
            else:
                conn.execute("RELEASE op")
                outcomes.append((True, value))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes


class GroupCommitter:
    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._connection = connection
        self._pending: list[tuple[WriteOp, asyncio.Future[Any]]] = []
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._in_flight = False
        self._idle = asyncio.Event()
        self.batches = 0  # for tests and benchmarks
        self.operations = 0

    async def write(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run `op` in a transaction (shared with other writers queued now) and return its result.

        If the caller is cancelled, the write still happens or fails as a whole; it is never half done.
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((op, future))
        self._idle.clear()
        self._wakeup.set()
        if self._worker is None:
            self._worker = asyncio.create_task(self._drain(), name="sqlite-group-commit")
        result: T = await asyncio.shield(future)
        return result

    async def _drain(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                self._in_flight = True
                try:
                    await self._commit(batch)
                finally:
                    self._in_flight = False
            self._idle.set()

    async def _commit(self, batch: list[tuple[WriteOp, asyncio.Future[Any]]]) -> None:
        ops = [op for op, _ in batch]
        try:
            # aiosqlite has no public "run this function on your thread"; _execute is what all of its
            # own methods use. Pinned by tests/test_store_sqlite.py (group commit tests).
            outcomes: list[_Outcome] = await self._connection._execute(self._run, ops)  # type: ignore[no-untyped-call]
        except BaseException as error:  # the whole transaction failed (e.g. disk full): tell everyone
            for _, future in batch:
                if not future.done():
                    future.set_exception(
                        error if isinstance(error, Exception) else RuntimeError("write aborted")
                    )
            if not isinstance(error, Exception):
                raise
            return
        self.batches += 1
        self.operations += len(batch)
        for (ok, value), (_, future) in zip(outcomes, batch, strict=True):
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def _run(self, ops: list[WriteOp]) -> list[_Outcome]:
        return run_batch(self._connection._conn, ops)

    async def close(self) -> None:
        """Finish queued and in-flight writes, then stop."""
        if self._worker is None:
            return
        while self._pending or self._in_flight:
            await self._idle.wait()
        self._worker.cancel()
        await asyncio.gather(self._worker, return_exceptions=True)
        self._worker = None
