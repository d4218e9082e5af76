"""Operations in the bot process: /readyz, /metrics, JSON logs, and the graceful SIGTERM drain."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from datetime import date
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest

from bot.app import open_core
from bot.cli import _stop_on_sigterm
from bot.config import Settings, SettingsError, load_settings
from bot.http import HttpServer
from bot.logs import make_handler
from bot.metrics import Metrics
from bot.serve import register_readiness, serve
from core.events import AgentEvent, CommandReply, TextDelta, TurnDone, TurnFailed
from core.providers.pool import ProviderCredentials, ProviderPool
from core.router import DRAINING_REPLY
from core.storage.base import Store
from tests.corekit import REF, collect, eventually, leftover_turns, message
from tests.fakes.llm_server import FakeLLMServer, Reply
from tests.test_serve import MemoryAdapter

SECRET = "sk-ant-json-secret-123456"


async def _get(http: HttpServer, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as client, client.get(f"http://127.0.0.1:{http.port}{path}") as reply:
        return reply.status, await reply.text()


class BrokenStore:
    async def last_reported_day(self, destination: str) -> date | None:
        raise ConnectionError("database is gone")


# --- /readyz -----------------------------------------------------------------------------------------


async def test_readyz_follows_adapters_store_and_drain(settings_for: Callable[..., Settings]) -> None:
    async with open_core(settings_for()) as core:
        adapter = MemoryAdapter()
        http = HttpServer("127.0.0.1", 0)
        register_readiness(http, core.store, [adapter], core.router)
        await http.start()
        try:
            status, body = await _get(http, "/readyz")
            assert status == 503 and json.loads(body) == {"ready": False, "not_ready": ["adapter:memory"]}
            assert (await _get(http, "/healthz"))[0] == 200  # alive, just not ready
            adapter.connected = True
            status, body = await _get(http, "/readyz")
            assert status == 200 and json.loads(body)["ready"] is True
            core.router.accepting = False  # draining for shutdown: take this replica out of the Service
            status, body = await _get(http, "/readyz")
            assert status == 503 and json.loads(body)["not_ready"] == ["accepting"]
        finally:
            await http.stop()


async def test_readyz_waits_for_the_provider_sdks_to_be_imported(
    settings_for: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "slow_sdk_for_readyz.py").write_text("import time\ntime.sleep(0.5)\n")  # an SDK's import
    monkeypatch.syspath_prepend(str(tmp_path))
    async with open_core(settings_for()) as core:
        adapter = MemoryAdapter()
        adapter.connected = True
        http = HttpServer("127.0.0.1", 0)
        pool = ProviderPool(ProviderCredentials())
        await http.start()
        try:
            register_readiness(http, core.store, [adapter], core.router, pool)
            pool.warm_up(["slow_sdk_for_readyz"])
            status, body = await _get(http, "/readyz")
            assert status == 503 and json.loads(body)["not_ready"] == ["providers"]
            assert (await _get(http, "/healthz"))[0] == 200  # the loop is free meanwhile
            await eventually(pool.warmed)
            assert (await _get(http, "/readyz"))[0] == 200
            await pool.aclose()
        finally:
            await http.stop()


async def test_readyz_fails_when_the_store_does_not_answer(settings_for: Callable[..., Settings]) -> None:
    async with open_core(settings_for()) as core:
        adapter = MemoryAdapter()
        adapter.connected = True
        http = HttpServer("127.0.0.1", 0)
        register_readiness(http, cast(Store, BrokenStore()), [adapter], core.router)
        await http.start()
        try:
            status, body = await _get(http, "/readyz")
        finally:
            await http.stop()
    assert status == 503 and json.loads(body)["not_ready"] == ["store"]


# --- /metrics ----------------------------------------------------------------------------------------


async def test_metrics_count_a_turn_and_are_served(
    llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    llm_server.script("anthropic", Reply.text("Hello there", chunks=2))
    async with open_core(settings_for()) as core:
        metrics = Metrics()
        other = Metrics()  # a second app instance in the same process must not collide
        metrics.instrument(core.router)
        events = await collect(core.router, "hi")
        assert isinstance(events[-1], TurnDone)
        await collect(core.router, "/help")
        http = HttpServer("127.0.0.1", 0)
        http.add_route("GET", "/metrics", metrics.handler)
        await http.start()
        try:
            status, text = await _get(http, "/metrics")
        finally:
            await http.stop()
    assert status == 200
    model = "anthropic:claude-sonnet-5-5"
    for line in (
        'bot_platform_events_total{platform="console"} 2.0',
        'bot_replies_total{kind="answer",platform="console"} 1.0',
        'bot_replies_total{kind="command",platform="console"} 1.0',
        f'bot_tokens_total{{kind="input",model="{model}"}} 10.0',
        f'bot_tokens_total{{kind="output",model="{model}"}} 5.0',
        'bot_time_to_first_text_seconds_count{platform="console"} 2.0',
        'bot_provider_latency_seconds_count{model="claude-sonnet-5-5",provider="anthropic"} 1.0',
    ):
        assert line in text, line
    assert f'bot_cost_usd_total{{model="{model}"}}' in text
    assert "bot_platform_rate_limited_total{" not in text  # no platform said 429 here
    assert "bot_platform_events_total{" not in _exposition(other)


def _exposition(metrics: Metrics) -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry).decode()


async def test_metrics_count_tool_calls_and_failures(
    llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    llm_server.script(
        "anthropic",
        Reply.tool_calls(("calculator", {"expression": "6*7"})),
        Reply.text("It is noon."),
        Reply(status=400, error_message="bad request"),
    )
    async with open_core(settings_for()) as core:
        metrics = Metrics()
        metrics.instrument(core.router)
        await collect(core.router, "what time is it?")
        failed = await collect(core.router, "again")
    assert isinstance(failed[-1], TurnFailed)
    text = _exposition(metrics)
    assert 'bot_tool_calls_total{outcome="ok",tool="calculator"} 1.0' in text
    assert 'bot_errors_total{platform="console",reason="provider_error"} 1.0' in text
    assert 'bot_replies_total{kind="failed",platform="console"} 1.0' in text


# --- logs --------------------------------------------------------------------------------------------


def test_json_logs_are_one_object_per_line_with_secrets_masked() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("test.ops.json")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(make_handler(stream, [SECRET], "json"))
    try:
        logger.info("calling with key %s", SECRET)
        try:
            raise RuntimeError(f"bad key {SECRET}")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.handlers.clear()
    assert SECRET not in stream.getvalue()
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert set(first) == {"time", "level", "logger", "message", "exc"}
    assert first["level"] == "INFO" and first["logger"] == "test.ops.json"
    assert first["message"] == "calling with key ***" and first["exc"] is None
    assert second["level"] == "ERROR" and "RuntimeError: bad key ***" in second["exc"]


def test_log_format_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-x")
    monkeypatch.setenv("LOG_FORMAT", "JSON")
    assert load_settings(_env_file=None).log_format == "json"
    assert load_settings(_env_file=None).bot_shutdown_grace == 30.0
    monkeypatch.setenv("LOG_FORMAT", "xml")
    monkeypatch.setenv("BOT_SHUTDOWN_GRACE", "-1")
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None)
    assert "LOG_FORMAT: use text or json" in caught.value.lines
    assert any(line.startswith("BOT_SHUTDOWN_GRACE:") for line in caught.value.lines)


# --- SIGTERM drain -----------------------------------------------------------------------------------


async def _first_text(events: AsyncIterator[AgentEvent]) -> list[AgentEvent]:
    seen = []
    async for event in events:
        seen.append(event)
        if isinstance(event, TextDelta):
            return seen
    raise AssertionError("no text")


async def _run_serve(core: Any, stop: asyncio.Event, grace_s: float) -> asyncio.Task[None]:
    adapter = MemoryAdapter()
    task = asyncio.create_task(
        serve([adapter], core.router, HttpServer("127.0.0.1", 0), stop=stop, grace_s=grace_s)
    )
    await eventually(lambda: adapter.connected, guard_s=3.0)
    return task


async def test_sigterm_lets_a_running_turn_finish_and_refuses_new_messages(
    llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    llm_server.script("anthropic", Reply.text("one two three", chunks=3, delay_s=0.1))
    async with open_core(settings_for()) as core:
        stop = asyncio.Event()
        served = await _run_serve(core, stop, grace_s=5.0)
        events = core.router.handle(message("tell me"))
        seen = await _first_text(events)
        stop.set()
        await eventually(lambda: not core.router.accepting, guard_s=3.0)
        refused = await collect(core.router, "anyone there?")
        seen += [event async for event in events]
        await asyncio.wait_for(served, 3.0)  # returns normally: `bot run` exits 0
        assert not await leftover_turns(core.settings.database_url)
    assert refused == [CommandReply(DRAINING_REPLY, private=True)]
    assert isinstance(seen[-1], TurnDone) and seen[-1].text == "one two three"
    assert len([r for r in llm_server.requests if r.path.endswith("/messages")]) == 1  # refusal: no LLM call


async def test_sigterm_stops_a_turn_that_outlives_the_grace_and_history_stays_valid(
    llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    llm_server.script("anthropic", Reply.text("a very slow answer indeed", chunks=5, delay_s=0.5))
    async with open_core(settings_for()) as core:
        stop = asyncio.Event()
        served = await _run_serve(core, stop, grace_s=0.3)
        events = core.router.handle(message("write an essay"))
        seen = await _first_text(events)
        stop.set()
        loop = asyncio.get_running_loop()
        started = loop.time()
        seen += [event async for event in events]
        await asyncio.wait_for(served, 3.0)
        assert loop.time() - started < 1.5
        assert not await leftover_turns(core.settings.database_url)
        state = await core.sessions.get(REF)
        history = [m.message for m in await core.store.load_messages(state.id)]
        # Next turn works on the stored history (the provider would refuse a broken one).
        core.router.accepting = True
        after = await collect(core.router, "hello again")
    assert isinstance(seen[-1], TurnFailed) and seen[-1].reason == "cancelled"
    assert seen[-1].message.startswith("Interrupted: I am restarting.")  # not "stopped by the user"
    assert [m.role for m in history] == ["user", "assistant"]
    assert history[-1].text.endswith("[interrupted: the bot restarted]")
    assert isinstance(after[-1], TurnDone)


async def test_sigterm_sets_the_stop_event() -> None:
    stop = _stop_on_sigterm()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(stop.wait(), 2.0)
    finally:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
