"""Platform 429s and refused replies reach /metrics: `bot run` (bot/cli.py's wiring, the Metrics instance
as every adapter's observer) with the real Slack adapter against the fake Slack."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable

import aiohttp

from adapters.slack.settings import SlackSettings
from bot.cli import _run
from bot.config import Settings
from tests.fakes.llm_server import FakeLLMServer, Reply
from tests.fakes.slack_server import APP_TOKEN, BOT_TOKEN, BOT_USER, FakeSlack, mention
from tests.ports import free_port

CHANNEL = "C0GENERAL"


async def _get(port: int, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as client,
        client.get(f"http://127.0.0.1:{port}{path}") as reply,
    ):
        return reply.status, await reply.text()


async def _until_ready(port: int, running: asyncio.Task[int]) -> None:
    for _ in range(1000):
        assert not running.done(), running.result()
        with contextlib.suppress(aiohttp.ClientError):
            if (await _get(port, "/readyz"))[0] == 200:
                return
        await asyncio.sleep(0.01)
    raise AssertionError("bot run did not become ready")


async def test_bot_run_shows_platform_429s_and_refused_replies_on_metrics(
    llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    fake = FakeSlack()
    await fake.start()
    slack = SlackSettings(
        _env_file=None,  # type: ignore[call-arg]
        bot_token=BOT_TOKEN,
        app_token=APP_TOKEN,
        api_url=fake.api_url,
        stream_interval=0.02,
        edit_interval=0.02,
    )
    port = free_port()
    running = asyncio.create_task(_run(settings_for(http_host="127.0.0.1", http_port=port, slack=slack)))
    try:
        await _until_ready(port, running)
        _, before = await _get(port, "/metrics")

        # A 429 on chat.startStream: the reply falls back to post + edit, and the 429 is counted once.
        llm_server.script("anthropic", Reply.text("Still here.", chunks=2))
        fake.fail("chat.startStream", status=429, retry_after=1)
        event = fake.user_message(CHANNEL, f"<@{BOT_USER}> hello")
        await fake.push_event(mention(event))
        await fake.wait_for(lambda: fake.answer_text(CHANNEL, event["ts"]) == "Still here.")

        # A reply Slack refuses outright: one platform error.
        fake.fail("chat.startStream", error="unknown_method")  # posts and edits from now on
        fake.fail("chat.postMessage", error="channel_not_found", times=100)
        refused = fake.user_message(CHANNEL, f"<@{BOT_USER}> and now?")
        await fake.push_event(mention(refused))
        for _ in range(500):
            status, text = await _get(port, "/metrics")
            if 'platform="slack",reason="platform_api"' in text:
                break
            await asyncio.sleep(0.01)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
        await fake.stop()
    assert status == 200
    assert "bot_platform_rate_limited_total{" not in before
    assert 'bot_platform_rate_limited_total{platform="slack"} 1.0' in text
    assert 'bot_errors_total{platform="slack",reason="platform_api"} 1.0' in text
    assert fake.rate_limited == 1
