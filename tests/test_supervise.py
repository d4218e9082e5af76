"""Adapter supervision in `bot run` (bot/serve.py): one platform failing never takes the others down.

An adapter that fails after it had connected is logged, reported down on /readyz and /metrics and
started again with backoff while the rest keeps serving; one that fails on its first start ends
`serve` with its readable error; shutdown still works. The last test does it with the real Discord
adapter: the fake gateway closes the session with a code discord.py gives up on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import cast

import aiohttp
import pytest

from bot.app import open_core
from bot.config import Settings, SettingsError
from bot.http import HttpServer
from bot.metrics import Metrics
from bot.serve import AdapterStartError, RestartPolicy, register_readiness, serve
from core.adapter import Adapter
from core.events import TurnDone
from core.inbound import ConversationRef
from core.reports.model import DailyReport
from tests.corekit import RecordingSurface, collect, eventually
from tests.discordkit import fake
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.llm_server import FakeLLMServer, Reply
from tests.test_serve import MemoryAdapter

__all__ = ["fake"]  # the fixture (tests/discordkit.py)

QUICK = RestartPolicy(first_delay_s=0.01, max_delay_s=0.04, stable_after_s=3600.0)


class FlakyAdapter:
    """A platform whose connection breaks: each run connects, then fails when the test says so. Runs
    after the first wait for `reconnect` before they connect (so the test can look while it is down)."""

    name = "flaky"

    def __init__(self, *, fail_at_start: Exception | None = None) -> None:
        self.connected = False
        self.runs = 0
        self.fail_at_start = fail_at_start
        self.reconnect = asyncio.Event()
        self.breaks = asyncio.Queue[Exception]()

    async def run(self) -> None:
        self.runs += 1
        if self.fail_at_start is not None:
            raise self.fail_at_start
        if self.runs > 1:
            await self.reconnect.wait()
        self.connected = True
        try:
            raise await self.breaks.get()
        finally:
            self.connected = False

    def ready(self) -> bool:
        return self.connected

    def surface_for(self, ref: ConversationRef, reply_address: str) -> RecordingSurface:
        return RecordingSurface()

    async def post_report(self, destination: str, report: DailyReport, chart_png: bytes | None) -> None:
        raise AssertionError("no reports here")

    async def post_announcement(self, destination: str, text: str) -> None:
        raise AssertionError("no announcements here")


def adapters(*items: object) -> list[Adapter]:
    """The test platforms as `Adapter`s (tests.test_serve.MemoryAdapter posts no reports)."""
    return [cast(Adapter, item) for item in items]


def up(metrics: Metrics, platform: str) -> float | None:
    """`bot_adapter_up` as the supervisor reported it (None before the first report)."""
    return metrics.registry.get_sample_value("bot_adapter_up", {"platform": platform})


async def _get(http: HttpServer, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as client, client.get(f"http://127.0.0.1:{http.port}{path}") as reply:
        return reply.status, await reply.text()


async def test_a_failed_adapter_is_reported_and_restarted_while_the_others_serve(
    llm_server: FakeLLMServer, settings_for: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.serve")
    async with open_core(settings_for()) as core:
        flaky, steady = FlakyAdapter(), MemoryAdapter()
        http, metrics = HttpServer("127.0.0.1", 0), Metrics()
        http.add_route("GET", "/metrics", metrics.handler)
        register_readiness(http, core.store, adapters(flaky, steady), core.router)
        served = asyncio.create_task(
            serve(adapters(flaky, steady), core.router, http, restart=QUICK, observer=metrics)
        )
        await eventually(lambda: up(metrics, "flaky") == up(metrics, "memory") == 1)
        assert (await _get(http, "/readyz"))[0] == 200

        await flaky.breaks.put(KeyError("channel_id"))  # e.g. a payload its library choked on
        await eventually(lambda: flaky.runs == 2)
        status, body = await _get(http, "/readyz")
        assert status == 503 and json.loads(body)["not_ready"] == ["adapter:flaky"]
        _, text = await _get(http, "/metrics")
        assert 'bot_adapter_restarts_total{platform="flaky"} 1.0' in text
        assert 'bot_adapter_up{platform="flaky"} 0.0' in text
        assert 'bot_adapter_up{platform="memory"} 1.0' in text  # the other adapter is unaffected
        assert "process_cpu_seconds_total" in text and "python_info{" in text
        # Meanwhile the rest of the bot goes on: a turn runs to its end.
        assert isinstance((await collect(core.router, "still answering?"))[-1], TurnDone)
        assert not served.done() and steady.connected

        flaky.reconnect.set()
        await eventually(lambda: up(metrics, "flaky") == 1)
        assert (await _get(http, "/readyz"))[0] == 200
        served.cancel()
        await asyncio.gather(served, return_exceptions=True)
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in failures] == [
        "flaky adapter failed (KeyError: 'channel_id'); restarting in 0.01s"
    ]
    assert failures[0].exc_info is None  # one line; the traceback is at DEBUG


async def restart_delays(
    settings: Settings, caplog: pytest.LogCaptureFixture, policy: RestartPolicy, failures: int
) -> list[str]:
    """Break a connected adapter `failures` times; the delays the supervisor said it would wait."""
    caplog.set_level(logging.ERROR, logger="bot.serve")
    async with open_core(settings) as core:
        flaky = FlakyAdapter()
        flaky.reconnect.set()
        served = asyncio.create_task(
            serve(adapters(flaky), core.router, HttpServer("127.0.0.1", 0), restart=policy)
        )
        for runs in range(1, failures + 1):
            await eventually(lambda: flaky.connected and flaky.runs == runs)  # noqa: B023
            await flaky.breaks.put(ConnectionResetError("gone"))
        await eventually(lambda: flaky.runs == failures + 1)
        served.cancel()
        await asyncio.gather(served, return_exceptions=True)
    return [r.getMessage().rsplit(" ", 1)[1] for r in caplog.records]


async def test_restarts_back_off_exponentially_up_to_the_cap(
    settings_for: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    policy = RestartPolicy(first_delay_s=0.01, max_delay_s=0.04, stable_after_s=3600.0)
    delays = await restart_delays(settings_for(), caplog, policy, failures=5)
    assert delays == ["0.01s", "0.02s", "0.04s", "0.04s", "0.04s"]


async def test_an_adapter_that_stayed_up_long_enough_starts_again_from_the_first_delay(
    settings_for: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    policy = RestartPolicy(first_delay_s=0.01, max_delay_s=1.0, stable_after_s=0.0)
    assert await restart_delays(settings_for(), caplog, policy, failures=3) == ["0.01s"] * 3


async def test_an_adapter_failing_on_its_first_start_ends_serve_with_its_message(
    settings_for: Callable[..., Settings],
) -> None:
    class DemoStartError(Exception):
        pass

    async with open_core(settings_for()) as core:
        broken = FlakyAdapter(fail_at_start=DemoStartError("Demo rejected DEMO_BOT_TOKEN; copy it again"))
        steady = MemoryAdapter()
        http = HttpServer("127.0.0.1", 0)
        with pytest.raises(AdapterStartError) as raised:
            await asyncio.wait_for(serve(adapters(broken, steady), core.router, http, restart=QUICK), 10.0)
    # A SettingsError: `bot run` prints it as one "config error: ..." line and exits 2.
    assert raised.value.lines == ["flaky could not start: Demo rejected DEMO_BOT_TOKEN; copy it again"]
    assert isinstance(raised.value, SettingsError)
    assert isinstance(raised.value.__cause__, DemoStartError)
    assert broken.runs == 1  # not retried: a setting to fix


async def test_shutdown_while_an_adapter_waits_to_restart(
    settings_for: Callable[..., Settings],
) -> None:
    slow = RestartPolicy(first_delay_s=3600.0)
    async with open_core(settings_for()) as core:
        flaky = FlakyAdapter()
        stop = asyncio.Event()
        served = asyncio.create_task(
            serve(
                adapters(flaky), core.router, HttpServer("127.0.0.1", 0), stop=stop, grace_s=1.0, restart=slow
            )
        )
        await eventually(lambda: flaky.connected)
        await flaky.breaks.put(RuntimeError("lost"))
        await eventually(lambda: not flaky.connected)
        stop.set()  # SIGTERM: drains, then ends every task, the waiting supervisor too
        await asyncio.wait_for(served, 10.0)  # returns normally
    assert flaky.runs == 1


# --- the real Discord adapter ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def supervised_discord(fake: FakeDiscord, settings: Settings) -> AsyncIterator[tuple[Adapter, Metrics]]:
    """The real Discord adapter under `serve`'s supervisor (quick restarts), once it has connected."""
    from adapters.discord.adapter import DiscordAdapter
    from core.adapter import AdapterContext
    from tests.discordkit import NoRoutes, discord_settings

    async with open_core(settings) as core:
        metrics = Metrics()
        context = AdapterContext(core.router, NoRoutes(), settings.offered_models, observer=metrics)
        adapter = DiscordAdapter(discord_settings(fake), context)
        # discord.py waits 2 s after the last GUILD_CREATE before it calls itself ready: not needed here.
        adapter.client._connection.guild_ready_timeout = 0.05
        served = asyncio.create_task(
            serve([adapter], core.router, HttpServer("127.0.0.1", 0), restart=QUICK, observer=metrics)
        )
        try:
            await eventually(lambda: up(metrics, "discord") == 1, guard_s=15.0)
            yield adapter, metrics
        finally:
            served.cancel()
            await asyncio.gather(served, return_exceptions=True)


async def test_discord_stopped_by_the_gateway_is_restarted_and_answers_again(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    dm = fake.add_dm(fake.alice)
    async with supervised_discord(fake, settings_for()) as (adapter, metrics):
        first_session = fake.session
        await fake.drop_gateway(code=4011)  # "sharding required": discord.py stops, it does not resume
        await eventually(lambda: fake.session is not first_session and adapter.ready(), guard_s=15.0)
        await fake.user_message("are you back?", channel=dm)
        answered = ["echo: are you back?"]
        await fake.wait_for(lambda: [m["content"] for m in fake.bot_messages_in(dm)] == answered)
    assert metrics.registry.get_sample_value("bot_adapter_restarts_total", {"platform": "discord"}) == 1
    assert len(fake.sessions) == 2  # a new session (IDENTIFY), not a RESUME of the old one


async def test_an_answer_cut_off_by_a_discord_restart_lands_once_after_it(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    dm = fake.add_dm(fake.alice)
    answer = "one two three four five six"
    llm_server.script("anthropic", Reply.text(answer, chunks=6, delay_s=0.3))
    async with supervised_discord(fake, settings_for()):
        await fake.user_message("a slow question", channel=dm)
        await fake.wait_for(lambda: bool(fake.bot_messages_in(dm)))  # the answer has started
        await fake.drop_gateway(code=4011)  # the adapter stops mid-answer; the turn goes on
        await fake.wait_for(lambda: [m["content"] for m in fake.bot_messages_in(dm)] == [answer])
