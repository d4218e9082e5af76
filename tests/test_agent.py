"""The agent loop end to end: router -> sessions -> agent -> real SDKs -> fake LLM server -> store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from bot.app import open_core
from bot.config import Settings
from core.events import Notice, TextDelta, TextReset, ToolFinished, ToolStarted, TurnFailed, UsageReport
from core.tools.base import Tool, ToolContext
from tests.corekit import collect, done, of_type, streamed_text
from tests.fakes.llm_server import FakeLLMServer, Reply, Usage

SettingsFor = Callable[..., Settings]


def anthropic_messages(server: FakeLLMServer, index: int = -1) -> list[dict[str, Any]]:
    bodies = [b for b in server.bodies("anthropic") if "tools" in b]  # turn calls, not summaries
    return list(bodies[index]["messages"])


def block_types(message: dict[str, Any]) -> list[str]:
    return [block["type"] for block in message["content"]]


async def test_streams_text_in_order(llm_server: FakeLLMServer, settings_for: SettingsFor) -> None:
    # Apart in time: one delta each (text that arrives in one read is one delta).
    llm_server.script("anthropic", Reply.text("Hello there, teammate!", chunks=4, delay_s=0.02))
    async with open_core(settings_for()) as core:
        events = await collect(core.router, "hi")
    deltas = of_type(events, TextDelta)
    assert len(deltas) == 4
    assert streamed_text(events) == "Hello there, teammate!"
    assert done(events).text == "Hello there, teammate!"
    body = llm_server.bodies("anthropic")[0]
    assert body["model"] == "claude-sonnet-5-5"
    assert body["stream"] is True
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}


async def test_tool_round_trip(llm_server: FakeLLMServer, settings_for: SettingsFor) -> None:
    llm_server.script(
        "anthropic",
        Reply.text_then_tools("Let me check.", ("current_time", {"timezone": "Europe/Berlin"})),
        Reply.text("It is afternoon in Berlin."),
    )
    async with open_core(settings_for()) as core:
        events = await collect(core.router, "what time is it in Berlin?")
    started = of_type(events, ToolStarted)
    finished = of_type(events, ToolFinished)
    assert [(s.name, s.arguments) for s in started] == [("current_time", {"timezone": "Europe/Berlin"})]
    assert not finished[0].is_error and "Europe/Berlin" in finished[0].output
    assert done(events).text == "Let me check.\n\nIt is afternoon in Berlin."
    assert streamed_text(events) == done(events).text
    second = anthropic_messages(llm_server)
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    assert block_types(second[1]) == ["text", "tool_use"]
    result = second[2]["content"][0]
    assert result["type"] == "tool_result" and result["tool_use_id"] == second[1]["content"][1]["id"]


def _rendezvous_tools() -> list[Tool]:
    """Two tools that each wait for the other: they only both finish if they run concurrently."""
    first, second = asyncio.Event(), asyncio.Event()

    async def ping(args: dict[str, Any], ctx: ToolContext) -> str:
        first.set()
        await asyncio.wait_for(second.wait(), 2)
        return "ping done"

    async def pong(args: dict[str, Any], ctx: ToolContext) -> str:
        second.set()
        await asyncio.wait_for(first.wait(), 2)
        return "pong done"

    schema = {"type": "object", "properties": {}, "additionalProperties": False}
    return [
        Tool("ping", "waits for pong", schema, ping, read_only=True),
        Tool("pong", "waits for ping", schema, pong, read_only=True),
    ]


async def test_parallel_tools_run_concurrently(llm_server: FakeLLMServer, settings_for: SettingsFor) -> None:
    llm_server.script("anthropic", Reply.tool_calls(("ping", {}), ("pong", {})), Reply.text("both done"))
    async with open_core(settings_for(), extra_tools=_rendezvous_tools()) as core:
        events = await collect(core.router, "run both")
    outputs = {f.name: (f.output, f.is_error) for f in of_type(events, ToolFinished)}
    assert outputs == {"ping": ("ping done", False), "pong": ("pong done", False)}
    results = anthropic_messages(llm_server)[2]["content"]
    assert [r["content"] for r in results] == ["ping done", "pong done"]  # call order, not finish order


async def test_invalid_tool_input_goes_back_to_the_model(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    llm_server.script(
        "openai",
        Reply.tool_calls(("calculator", {"expr": "1+1"})),
        Reply.invalid_tool_args("calculator", '{"expression": "1+'),
        Reply.text("Sorry, I could not calculate that."),
    )
    async with open_core(settings_for(bot_model="openai:gpt-5.4-mini")) as core:
        events = await collect(core.router, "add")
    errors = [f.output for f in of_type(events, ToolFinished)]
    assert len(errors) == 2 and all(f.is_error for f in of_type(events, ToolFinished))
    assert "invalid input" in errors[0] and "'expression' is a required property" in errors[0]
    assert "not a JSON object" in errors[1]
    assert done(events).text.endswith("Sorry, I could not calculate that.")
    last = llm_server.bodies("openai")[-1]["messages"]
    assert [m["role"] for m in last][-4:] == ["assistant", "tool", "assistant", "tool"]


async def test_retry_then_fallback_model(llm_server: FakeLLMServer, settings_for: SettingsFor) -> None:
    llm_server.script("anthropic", Reply.rate_limited(retry_after=0.01), Reply.server_error(503))
    llm_server.script("openai", Reply.text("answer from the fallback"))
    settings = settings_for(bot_fallback_model="openai:gpt-5.4-mini")
    async with open_core(settings) as core:
        events = await collect(core.router, "hello")
        totals = {t.model: t for t in await core.store.usage_totals(_long_ago())}
    notices = [n.kind for n in of_type(events, Notice)]
    assert notices == ["retrying", "fallback"]
    assert done(events).text == "answer from the fallback"
    assert totals["anthropic:claude-sonnet-5-5"].calls == 2  # both failed attempts are accounted
    assert totals["openai:gpt-5.4-mini"].calls == 1


async def test_provider_failure_without_fallback_keeps_history_valid(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    llm_server.script("anthropic", Reply.error(401, "invalid x-api-key"))
    async with open_core(settings_for()) as core:
        events = await collect(core.router, "hello")
        failed = events[-1]
        assert isinstance(failed, TurnFailed) and failed.reason == "provider_error"
        assert "sk-ant-test-secret-key" not in failed.message
        again = await collect(core.router, "still there?")
    assert done(again).text == "echo: still there?"
    roles = [m["role"] for m in anthropic_messages(llm_server)]
    assert roles == ["user", "assistant", "user"]


async def test_stream_cut_after_text_keeps_partial(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    # A cut after text is retried; only when every attempt was cut (the tests allow 2, no fallback) does
    # the turn fail, keeping the last attempt's text.
    llm_server.script(
        "anthropic",
        Reply.cut(after_chunks=2, text="one two three four five six"),
        Reply.cut(after_chunks=1, text="uno dos tres cuatro cinco seis"),
    )
    async with open_core(settings_for()) as core:
        events = await collect(core.router, "count")
        failed = events[-1]
        assert isinstance(failed, TurnFailed)
        reset = events.index(TextReset(""))  # the first attempt's text was taken back before the retry
        assert failed.partial_text and failed.partial_text == streamed_text(events[reset + 1 :])
        assert failed.partial_text == "uno dos tr"
        assert "cut off" in failed.message
        history = (await core.sessions.get(_ref())).messages()
    assert history[-1].role == "assistant" and history[-1].text == "uno dos tr [answer cut off]"


async def test_cut_before_any_text_is_retried(llm_server: FakeLLMServer, settings_for: SettingsFor) -> None:
    llm_server.script("anthropic", Reply.cut(after_chunks=0), Reply.text("second try"))
    async with open_core(settings_for()) as core:
        events = await collect(core.router, "hi")
    assert done(events).text == "second try"
    assert [n.kind for n in of_type(events, Notice)] == ["retrying"]


async def test_usage_rows_and_costs(llm_server: FakeLLMServer, settings_for: SettingsFor) -> None:
    usage = Usage(input=1000, output=500, cache_read=2000, cache_write=100)
    llm_server.script("anthropic", Reply.text("priced", usage=usage))
    llm_server.script("openai", Reply.text("unpriced", usage=Usage(input=50, output=7)))
    async with open_core(settings_for(bot_models="openai:my-local-llama")) as core:
        events = await collect(core.router, "price me")
        report = of_type(events, UsageReport)[0]
        await collect(core.router, "/model openai:my-local-llama")
        await collect(core.router, "and now?")
        totals = {t.model: t for t in await core.store.usage_totals(_long_ago())}
    expected = (1000 * 2 + 500 * 10 + 2000 * 0.2 + 100 * 2.5) / 1_000_000  # claude-sonnet-5-5 list prices
    assert report.cost_usd is not None and abs(report.cost_usd - expected) < 1e-12
    assert done(events).cost_usd == report.cost_usd
    priced = totals["anthropic:claude-sonnet-5-5"]
    assert (
        priced.input_tokens,
        priced.output_tokens,
        priced.cache_read_tokens,
        priced.cache_write_tokens,
    ) == (
        1000,
        500,
        2000,
        100,
    )
    local = totals["openai:my-local-llama"]
    assert local.unpriced_calls == 1 and local.cost_usd == 0  # unknown, not silently zero-priced
    assert local.input_tokens == 50


async def test_huge_message_is_refused_without_a_provider_call(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    async with open_core(settings_for(bot_context_tokens=4000)) as core:
        events = await collect(core.router, "word " * 20_000)
    failed = events[-1]
    assert isinstance(failed, TurnFailed) and "too long" in failed.message
    assert llm_server.requests == []


def _ref() -> Any:
    from tests.corekit import REF

    return REF


def _long_ago() -> Any:
    from datetime import UTC, datetime

    return datetime(2000, 1, 1, tzinfo=UTC)
