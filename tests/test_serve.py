"""`bot run` with platform adapters: the HTTP server, adapters running, restart notes once connected."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp

from bot.app import open_core
from bot.config import Settings
from bot.http import HttpServer
from bot.serve import serve
from core.conversation import Message
from core.inbound import ConversationRef
from core.render import Capabilities
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
    async with open_core(settings_for()) as core:
        state = await core.sessions.get(REF)
        turn = await core.store.add_turn(state.id, REF, "u1", "what is the plan?", "evt-1")
        await core.sessions.append(
            state, [Message.user("what is the plan?")], turn_id=turn.id, turn_status="running"
        )
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
