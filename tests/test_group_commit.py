"""Group commit: concurrent writes share transactions, and one failure spoils only itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.conversation import Message
from core.inbound import ConversationRef
from core.storage.sqlite import SQLiteStore

REF = ConversationRef("test", "w", "c")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(str(tmp_path / "group.db"))
    await opened.open()
    yield opened
    await opened.close()


async def test_concurrent_writes_share_transactions(store: SQLiteStore) -> None:
    results = await asyncio.gather(*(store.claim_event("p", f"e{i % 150}") for i in range(300)))
    assert sum(results) == 150  # each id claimed exactly once, however the batches fell
    committer = store.group_commit
    assert committer is not None
    assert committer.operations == 300
    assert committer.batches < 30  # far fewer transactions (and thread hops) than writes


async def test_a_failing_write_does_not_spoil_its_batch(store: SQLiteStore) -> None:
    session = await store.current_session(REF)
    turn = await store.add_turn(session.id, REF, "u", "hi", "e1")
    good = store.append_messages(
        session.id, [(Message.user("kept"), 3)], turn_id=turn.id, turn_status="running"
    )
    bad = store.append_messages(
        session.id, [(Message.user("rolled back"), 3)], turn_id=9999, turn_status="done"
    )
    outcome = await asyncio.gather(good, bad, return_exceptions=True)
    assert isinstance(outcome[1], LookupError)
    texts = [m.message.text for m in await store.load_messages(session.id)]
    assert texts == ["kept"]
    kept = await store.get_turn(turn.id)
    assert kept is not None and kept.status == "running"


async def test_close_waits_for_queued_writes(tmp_path: Path) -> None:
    path = str(tmp_path / "close.db")
    store = SQLiteStore(path)
    await store.open()
    writes = [asyncio.create_task(store.claim_event("p", f"e{i}")) for i in range(50)]
    await asyncio.sleep(0)
    await store.close()
    assert all(await asyncio.gather(*writes))
    reopened = SQLiteStore(path)
    await reopened.open()
    assert not await reopened.claim_event("p", "e49")  # it landed before the close
    await reopened.close()
