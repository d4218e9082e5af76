"""`bot run` with platform adapters: the HTTP server, adapters running, unfinished turns answered once
connected (on this process's restart, and for a replica that vanished)."""

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
from core.storage import open_store
from tests.corekit import RecordingSurface, eventually
from tests.fakes.llm_server import FakeLLMServer

REF = ConversationRef("memory", "w", "c1")


class MemoryAdapter:
    """An in-memory platform: connects after a moment and records what it posts, per reply address."""

    name = "memory"

    def __init__(self) -> None:
        self.connected = False
        self.surfaces: dict[tuple[ConversationRef, str], RecordingSurface] = {}

    async def run(self) -> None:
        await asyncio.sleep(0.05)
        self.connected = True
        await asyncio.Event().wait()  # serve until cancelled

    def ready(self) -> bool:
        return self.connected

    def surface_for(self, ref: ConversationRef, reply_address: str) -> RecordingSurface:
        return self.surfaces.setdefault((ref, reply_address), RecordingSurface())

    def shown(self) -> list[tuple[ConversationRef, list[str]]]:
        return [(ref, surface.texts()) for (ref, _), surface in self.surfaces.items() if surface.texts()]


async def test_serve_runs_adapters_health_and_answers_what_a_crash_left(
    llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for()
    async with open_core(settings) as previous_run:  # stopped mid-turn, as by a crash
        state = await previous_run.sessions.get(REF)
        turn = await previous_run.store.admit_turn(
            REF, "u1", "what is the plan?", "evt-1", reply_address="a1"
        )
        assert turn is not None
        await previous_run.sessions.append(
            state, [Message.user("what is the plan?")], turn_id=turn.id, turn_status="running"
        )
    async with open_core(settings) as core:
        adapter = MemoryAdapter()
        http = HttpServer("127.0.0.1", 0)
        task = asyncio.create_task(serve([adapter], core.router, http))
        await eventually(lambda: bool(adapter.shown()))
        async with (
            aiohttp.ClientSession() as client,
            client.get(f"http://127.0.0.1:{http.port}/healthz") as reply,
        ):
            assert reply.status == 200
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # It used no tool, so it was run again and answered where the message came from.
    assert list(adapter.surfaces) == [(REF, "a1")]
    assert adapter.shown() == [(REF, ["echo: what is the plan?"])]


async def test_replicas_finish_the_turns_of_a_replica_that_vanished(
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
        turn = await other.admit_turn(REF, "u1", "are you still there?", "evt-9", reply_address="a9")
        assert turn is not None
        await other.append_messages(turn.session_id, [(Message.user("are you still there?"), 5)],
                                    turn_id=turn.id, turn_status="running")  # fmt: skip
        await other.close()
        await eventually(lambda: bool(adapter.shown()))
        await core.router.wait_idle()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        history = [m.message.text for m in await core.store.load_messages(turn.session_id)]
        assert (await core.store.get_turn(turn.id)).delivered_at is not None  # type: ignore[union-attr]
    assert adapter.shown() == [(REF, ["echo: are you still there?"])]
    assert history == ["are you still there?", "echo: are you still there?"]
