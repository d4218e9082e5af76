"""`bot run` with platform adapters: the HTTP server, adapters running, restart notes once connected."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import pytest

import bot.serve
from bot.app import open_core
from bot.config import Settings
from bot.http import HttpServer
from bot.serve import serve
from core.conversation import Message
from core.inbound import ConversationRef
from core.render import Capabilities
from core.router import INTERRUPTED_NOTE
from core.storage import open_store
from tests.fakes.llm_server import FakeLLMServer

REF = ConversationRef("memory", "w", "c1")


class MemoryAdapter:
    """An in-memory platform: connects after a moment and records what it posts."""

    name = "memory"
    capabilities = Capabilities(max_message_chars=1000, edit_interval_s=0.1)

    def __init__(self) -> None:
        self.connected = False
        self.notices: list[tuple[ConversationRef, str]] = []

    async def run(self) -> None:
        await asyncio.sleep(0.05)
        self.connected = True
        await asyncio.Event().wait()  # serve until cancelled

    def ready(self) -> bool:
        return self.connected

    async def post_notice(self, ref: ConversationRef, text: str) -> None:
        self.notices.append((ref, text))


async def test_serve_runs_adapters_health_and_restart_notes(
    llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for()
    async with open_core(settings) as previous_run:  # stopped mid-turn, as by a crash
        state = await previous_run.sessions.get(REF)
        turn = await previous_run.store.add_turn(state.id, REF, "u1", "what is the plan?", "evt-1")
        await previous_run.sessions.append(
            state, [Message.user("what is the plan?")], turn_id=turn.id, turn_status="running"
        )
    async with open_core(settings) as core:
        adapter = MemoryAdapter()
        http = HttpServer("127.0.0.1", 0)
        task = asyncio.create_task(serve([adapter], core.router, http))
        for _ in range(100):
            if adapter.notices:
                break
            await asyncio.sleep(0.02)
        async with (
            aiohttp.ClientSession() as client,
            client.get(f"http://127.0.0.1:{http.port}/healthz") as reply,
        ):
            assert reply.status == 200
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert adapter.notices == [
        (REF, 'I restarted before I could finish answering "what is the plan?". Please ask again.')
    ]


async def test_replicas_close_the_turns_of_a_replica_that_vanished(
    llm_server: FakeLLMServer,
    settings_for: Callable[..., Settings],
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bot.serve, "ORPHAN_SWEEP_S", 0.1)
    settings = settings_for(database_url=postgres_url)
    async with open_core(settings) as core:
        adapter = MemoryAdapter()
        http = HttpServer("127.0.0.1", 0)
        task = asyncio.create_task(serve([adapter], core.router, http, store=core.store))
        # Another replica takes a message, starts on it, and disappears (its connections just end).
        other = open_store(postgres_url)
        await other.open()
        session = await other.current_session(REF)
        turn = await other.add_turn(session.id, REF, "u1", "are you still there?", "evt-9")
        await other.append_messages(session.id, [(Message.user("are you still there?"), 5)],
                                    turn_id=turn.id, turn_status="running")  # fmt: skip
        await other.close()
        for _ in range(200):
            if adapter.notices:
                break
            await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        history = [m.message.text for m in await core.store.load_messages(session.id)]
    assert adapter.notices == [
        (REF, 'I restarted before I could finish answering "are you still there?". Please ask again.')
    ]
    assert history == ["are you still there?", INTERRUPTED_NOTE]
