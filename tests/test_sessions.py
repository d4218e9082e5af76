"""Sessions through the router: ordering, cancel, restart, compaction, access, dedupe, recovery."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosqlite

from bot.app import open_core
from bot.config import Settings
from core.context import SUMMARISE_INSTRUCTIONS, SUMMARY_PREFIX
from core.conversation import Message
from core.events import AgentEvent, CommandReply, Notice, Refused, TextDelta, TurnDone, TurnFailed
from core.router import BROKEN_REPLY
from tests.corekit import REF, RecordingSurface, collect, done, leftover_turns, message, of_type
from tests.fakes.llm_server import FakeLLMServer, Reply

SettingsFor = Callable[..., Settings]


def turn_bodies(server: FakeLLMServer) -> list[dict[str, Any]]:
    return [b for b in server.bodies("anthropic") if b["system"][0]["text"] != SUMMARISE_INSTRUCTIONS]


def texts(body: dict[str, Any]) -> list[str]:
    return [block.get("text", "") for m in body["messages"] for block in m["content"]]


async def test_history_survives_a_restart(llm_server: FakeLLMServer, settings_for: SettingsFor) -> None:
    settings = settings_for()
    async with open_core(settings) as core:
        await collect(core.router, "my name is Ada")
    async with open_core(settings) as core:
        events = await collect(core.router, "what is my name?")
    assert done(events).text == "echo: what is my name?"
    assert texts(turn_bodies(llm_server)[-1]) == [
        "my name is Ada",
        "echo: my name is Ada",
        "what is my name?",
    ]


async def test_two_messages_in_one_session_run_in_order(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    llm_server.script("anthropic", Reply.text("first answer, slowly", chunks=5, delay_s=0.02))
    async with open_core(settings_for()) as core:
        first_events: list[AgentEvent] = []
        streaming = asyncio.Event()

        async def first() -> None:
            async for event in core.router.handle(message("first")):
                first_events.append(event)
                streaming.set()

        task = asyncio.create_task(first())
        await asyncio.wait_for(streaming.wait(), 2)  # the first turn is streaming
        second_events = await collect(core.router, "second")
        await task
    assert isinstance(second_events[0], Notice) and second_events[0].kind == "queued"
    assert done(first_events).text == "first answer, slowly"
    bodies = turn_bodies(llm_server)
    assert texts(bodies[1]) == ["first", "first answer, slowly", "second"]  # saw the whole first turn


async def test_other_sessions_are_not_held_up(llm_server: FakeLLMServer, settings_for: SettingsFor) -> None:
    llm_server.script("anthropic", Reply.text("slow " * 10, chunks=10, delay_s=0.05))
    async with open_core(settings_for()) as core:
        slow = asyncio.create_task(collect(core.router, "slow one"))
        await asyncio.sleep(0.05)
        other_ref = REF.__class__("console", "local", "bob")
        quick = await collect(core.router, "quick one", user="bob", ref=other_ref)
        assert not slow.done()  # bob was answered while alice's turn was still running
        await slow
    assert done(quick).text == "echo: quick one"


async def test_stop_cancels_mid_stream_and_history_stays_valid(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    llm_server.script("anthropic", Reply.text("word " * 100, chunks=100, delay_s=0.02))
    async with open_core(settings_for()) as core:
        events: list[AgentEvent] = []
        three_words = asyncio.Event()

        async def run() -> None:
            async for event in core.router.handle(message("talk a lot")):
                events.append(event)
                if len(of_type(events, TextDelta)) == 3:
                    three_words.set()

        task = asyncio.create_task(run())
        await asyncio.wait_for(three_words.wait(), 2)
        stop = await collect(core.router, "/stop")
        await asyncio.wait_for(task, 2)
        assert isinstance(stop[0], CommandReply) and "Stopping" in stop[0].text
        failed = events[-1]
        assert isinstance(failed, TurnFailed) and failed.reason == "cancelled"
        assert failed.partial_text.startswith("word word word")
        nothing = await collect(core.router, "/stop")
        assert "Nothing is running" in nothing[0].text  # type: ignore[union-attr]
        after = await collect(core.router, "are you there?")
    assert done(after).text == "echo: are you there?"
    roles = [m["role"] for m in turn_bodies(llm_server)[-1]["messages"]]
    assert roles == ["user", "assistant", "user"]
    assert texts(turn_bodies(llm_server)[-1])[1].endswith("[stopped by the user]")


async def test_stop_during_a_tool_keeps_tool_pairs(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    from core.tools.base import Tool, ToolContext

    started = asyncio.Event()

    async def forever(args: dict[str, Any], ctx: ToolContext) -> str:
        started.set()
        await asyncio.sleep(60)
        return "never"

    tool = Tool(
        "forever", "never ends", {"type": "object", "properties": {}}, forever, timeout_s=120, read_only=True
    )
    llm_server.script("anthropic", Reply.tool_calls(("forever", {})))
    async with open_core(settings_for(), extra_tools=[tool]) as core:
        task = asyncio.create_task(collect(core.router, "wait"))
        await asyncio.wait_for(started.wait(), 2)
        await collect(core.router, "/stop")
        events = await asyncio.wait_for(task, 2)
        assert isinstance(events[-1], TurnFailed)
        await collect(core.router, "next")
    messages = turn_bodies(llm_server)[-1]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    result = messages[2]["content"][0]
    assert result["type"] == "tool_result" and result["is_error"] is True


async def test_compaction_summarises_older_turns(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    settings = settings_for(bot_context_tokens=2000, bot_max_output_tokens=500)
    filler = "lorem ipsum dolor sit amet " * 40  # ~ 240 tokens
    async with open_core(settings) as core:
        for i in range(4):
            await collect(core.router, f"turn {i}: {filler}")
        llm_server.script(
            "anthropic", Reply.text("They chatted about lorem ipsum four times."), Reply.text("ok")
        )
        events = await collect(core.router, "and now?")
        state = await core.sessions.get(REF)
        assert state.record.summary == "They chatted about lorem ipsum four times."
        assert state.total_tokens <= 1500
    notices = [n for n in of_type(events, Notice) if n.kind == "compacted"]
    assert len(notices) == 1 and "summarised" in notices[0].text
    summary_call = [
        b for b in llm_server.bodies("anthropic") if b["system"][0]["text"] == SUMMARISE_INSTRUCTIONS
    ]
    assert "turn 0" in summary_call[0]["messages"][0]["content"][0]["text"]
    last = texts(turn_bodies(llm_server)[-1])
    assert last[0].startswith(SUMMARY_PREFIX) and not any(t.startswith("turn 0") for t in last)
    assert last[-1] == "and now?"


async def test_compaction_survives_a_failed_summary(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    settings = settings_for(bot_context_tokens=2000, bot_max_output_tokens=500, bot_retry_attempts=1)
    filler = "lorem ipsum dolor sit amet " * 40
    async with open_core(settings) as core:
        for i in range(4):
            await collect(core.router, f"turn {i}: {filler}")
        llm_server.script("anthropic", Reply.error(400, "summary refused"))
        events = await collect(core.router, "and now?")
    notices = [n.text for n in of_type(events, Notice) if n.kind == "compacted"]
    assert notices and "removed" in notices[0]  # the user is told; nothing vanishes silently
    assert done(events).text == "echo: and now?"


async def test_refused_user_gets_a_message_and_no_provider_call(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    async with open_core(settings_for(allowed_users="console:alice", admin_users="console:root")) as core:
        refused = await collect(core.router, "hi", user="mallory")
        admin = await collect(core.router, "hi", user="root")
        allowed = await collect(core.router, "hi")
    assert isinstance(refused[0], Refused) and "console:mallory" in refused[0].text
    assert isinstance(admin[-1], TurnDone) and isinstance(allowed[-1], TurnDone)
    assert len(llm_server.requests) == 2


async def test_redelivered_event_is_handled_once(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    async with open_core(settings_for()) as core:
        first = await collect(core.router, "hello", event_id="evt-1")
        again = await collect(core.router, "hello", event_id="evt-1")
        bot = await collect(core.router, "I am a bot", is_bot=True)
    assert isinstance(first[-1], TurnDone)
    assert again == [] and bot == []
    assert len(llm_server.requests) == 1


async def test_unfinished_turns_are_answered_after_restart(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    settings = settings_for()
    async with open_core(settings) as core:
        state = await core.sessions.get(REF)
        running = await core.store.add_turn(state.id, REF, "alice", "started before the crash", "e1")
        await core.sessions.append(
            state, [Message.user("started before the crash")], turn_id=running.id, turn_status="running"
        )
        await core.store.add_turn(state.id, REF, "alice", "never started", "e2")
    async with open_core(settings) as core:
        surface = RecordingSurface()
        assert await core.router.recover("console", lambda ref, address: surface) == 2
        await core.router.wait_idle()
        assert await leftover_turns(settings.database_url) == []
        history = (await core.sessions.get(REF)).messages()
        events = await collect(core.router, "hello again")
    # The turn cut off mid-way used no tool that acts, so it ran again; the one that never ran is answered.
    assert surface.texts() == ["echo: started before the crash", "echo: never started"]
    assert [m.role for m in history] == ["user", "assistant", "user", "assistant"]
    assert done(events).text == "echo: hello again"


async def test_empty_message_gets_a_hint(llm_server: FakeLLMServer, settings_for: SettingsFor) -> None:
    async with open_core(settings_for()) as core:
        events = await collect(core.router, "   ")
    assert isinstance(events[0], CommandReply) and "empty" in events[0].text
    assert llm_server.requests == []


async def test_a_store_failing_under_a_turn_ends_it_with_a_message(
    llm_server: FakeLLMServer, settings_for: SettingsFor, tmp_path: Path
) -> None:
    async with open_core(settings_for()) as core:
        await collect(core.router, "hello")  # the conversation is loaded and cached
        async with aiosqlite.connect(tmp_path / "bot.db") as side:  # the database breaks under the bot
            await side.execute("DROP TABLE messages")
            await side.commit()
        events = await asyncio.wait_for(collect(core.router, "are you there?"), 10)
    async with aiosqlite.connect(tmp_path / "bot.db") as side:
        statuses = [row[0] for row in await side.execute_fetchall("SELECT status FROM turns")]
    assert events[-1] == TurnFailed("internal_error", BROKEN_REPLY)
    assert statuses == ["done", "failed"]  # not left "running" (which would hold the conversation in a fleet)
