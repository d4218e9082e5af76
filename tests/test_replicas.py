"""Replicas on one PostgreSQL: two `bot run` processes behind a "load balancer", and two cores in one
process for `stop` sent to the replica that is not answering.

The two processes run the real Slack adapter in HTTP Events API mode against the fake Slack, and the
real Anthropic SDK against the fake LLM server. Slack's deliveries are spread over the replicas the way
a load balancer and Slack's retries would spread them: the same event reaches both, and two messages
of one thread reach different replicas while the first is still being answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from bot.app import open_core
from bot.config import Settings
from core.events import CommandReply, TextDelta, TurnFailed
from tests.corekit import collect, message
from tests.fakes.llm_server import FakeLLMServer, Reply
from tests.fakes.slack_server import BOT_TOKEN, BOT_USER, SIGNING_SECRET, FakeSlack, mention
from tests.ports import free_port

CHANNEL = "C0GENERAL"
PLATFORM_PREFIXES = ("SLACK_", "TELEGRAM_", "DISCORD_")  # only the platform configured below runs


class Replica:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process, self.port, self.log = process, port, log

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
def start_replicas(
    postgres_url: str, llm_server: FakeLLMServer, fake_slack: FakeSlack, tmp_path: Path
) -> Iterator[Callable[[int], list[Replica]]]:
    started: list[Replica] = []

    def start(count: int) -> list[Replica]:
        for n in range(count):
            port = free_port()
            env = {
                **{
                    k: v
                    for k, v in os.environ.items()
                    if not k.startswith(("SLACK_", "TELEGRAM_", "DISCORD_"))
                },
                "ANTHROPIC_API_KEY": "sk-ant-test-secret-key",
                "ANTHROPIC_BASE_URL": llm_server.anthropic_base_url,
                "BOT_MODEL": "anthropic:claude-sonnet-5-5",
                "DATABASE_URL": postgres_url,
                "DATABASE_POOL_SIZE": "4",
                "HTTP_HOST": "127.0.0.1",
                "HTTP_PORT": str(port),
                "SLACK_BOT_TOKEN": BOT_TOKEN,
                "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                "SLACK_MODE": "http",
                "SLACK_API_URL": fake_slack.api_url,
                "SLACK_STREAM_INTERVAL": "0.05",
                "LOG_LEVEL": "INFO",
            }
            log = tmp_path / f"replica-{n}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "bot", "run"],
                    cwd=tmp_path,  # no .env there: only the environment above counts
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            started.append(Replica(process, port, log))
        return started[-count:]

    yield start
    for replica in started:
        replica.process.send_signal(signal.SIGTERM)
    for replica in started:
        try:
            replica.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            replica.process.kill()
            replica.process.wait()


async def wait_ready(replicas: list[Replica], timeout_s: float = 60.0) -> None:
    async with aiohttp.ClientSession() as client:
        for replica in replicas:
            for _ in range(int(timeout_s / 0.1)):
                assert replica.process.poll() is None, replica.output()
                with contextlib.suppress(aiohttp.ClientError):
                    async with client.get(f"http://127.0.0.1:{replica.port}/readyz") as reply:
                        if reply.status == 200:
                            break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(
                    f"replica on port {replica.port} never became ready:\n{replica.output()}"
                )


def answers(llm_server: FakeLLMServer) -> list[list[str]]:
    """The user/assistant texts of each request to the LLM, in the order the requests arrived."""
    texts = []
    for body in llm_server.bodies("anthropic"):
        conversation = []
        for turn in body["messages"]:
            content = turn["content"]
            if isinstance(content, str):
                conversation.append(content)
            else:
                conversation.append(" ".join(b.get("text", "") for b in content if b.get("type") == "text"))
        texts.append(conversation)
    return texts


async def test_the_same_event_on_two_replicas_is_answered_once(
    start_replicas: Callable[[int], list[Replica]], llm_server: FakeLLMServer, fake_slack: FakeSlack
) -> None:
    a, b = start_replicas(2)
    await wait_ready([a, b])
    llm_server.script("anthropic", Reply.text("Answered exactly once.", chunks=3))
    event = fake_slack.user_message(CHANNEL, f"<@{BOT_USER}> what is our deploy day?")
    statuses = await asyncio.gather(
        fake_slack.post_event(a.events_url, mention(event), event_id="EvSAME"),
        fake_slack.post_event(b.events_url, mention(event), event_id="EvSAME"),
        fake_slack.post_event(b.events_url, mention(event), event_id="EvSAME", retry_num=1),
    )
    assert [status for status, _ in statuses] == [200, 200, 200]  # every delivery is acknowledged
    await fake_slack.wait_for(
        lambda: fake_slack.answer_text(CHANNEL, event["ts"]) == "Answered exactly once."
    )
    await asyncio.sleep(0.5)  # time for a second answer, if one were coming
    assert len(fake_slack.answer_messages(CHANNEL, event["ts"])) == 1
    assert len(llm_server.bodies("anthropic")) == 1


async def test_one_threads_messages_on_two_replicas_are_answered_in_order(
    start_replicas: Callable[[int], list[Replica]], llm_server: FakeLLMServer, fake_slack: FakeSlack
) -> None:
    a, b = start_replicas(2)
    await wait_ready([a, b])
    llm_server.script(
        "anthropic",
        Reply.text("Tuesday, after the standup.", chunks=4, delay_s=0.3),  # slow: still streaming...
        Reply.text("Yes, at 10:00.", chunks=2),
    )
    first = fake_slack.user_message(CHANNEL, f"<@{BOT_USER}> when do we deploy?")
    await fake_slack.post_event(a.events_url, mention(first))
    await fake_slack.wait_for(lambda: len(llm_server.bodies("anthropic")) == 1)
    # ...when the follow-up in the same thread reaches the other replica.
    follow_up = fake_slack.user_message(CHANNEL, f"<@{BOT_USER}> in the morning?", thread_ts=first["ts"])
    await fake_slack.post_event(b.events_url, mention(follow_up))

    def thread_answers() -> list[str]:
        return [m.text for m in fake_slack.answer_messages(CHANNEL, first["ts"])]

    await fake_slack.wait_for(lambda: "Yes, at 10:00." in thread_answers())
    assert thread_answers() == ["Tuesday, after the standup.", "Yes, at 10:00."]
    requests = answers(llm_server)
    assert len(requests) == 2
    # Replica b answered with a's whole exchange in its history: it waited for a's turn to finish.
    assert "when do we deploy?" in requests[1][0]
    assert requests[1][1] == "Tuesday, after the standup."
    assert "in the morning?" in requests[1][-1]


async def test_stop_sent_to_another_replica_stops_the_answer(
    llm_server: FakeLLMServer, settings_for: Callable[..., Settings], postgres_url: str
) -> None:
    llm_server.script("anthropic", Reply.text("a long answer that takes its time", chunks=8, delay_s=0.3))
    settings = settings_for(database_url=postgres_url)
    async with open_core(settings) as a, open_core(settings) as b:
        events = a.router.handle(message("write me an essay"))
        seen = [await anext(events)]
        while not isinstance(seen[-1], TextDelta):
            seen.append(await anext(events))
        assert await collect(b.router, "/stop") == [
            CommandReply("Stopping the current answer.", private=True)
        ]
        seen += [event async for event in events]
        assert await collect(b.router, "/stop") == [
            CommandReply("Nothing is running in this conversation.", private=True)
        ]
    assert isinstance(seen[-1], TurnFailed) and seen[-1].reason == "cancelled"


async def test_messages_arriving_together_are_stored_and_answered_in_arrival_order(
    llm_server: FakeLLMServer, settings_for: Callable[..., Settings], postgres_url: str
) -> None:
    llm_server.script("anthropic", *(Reply.text(f"answer {n}") for n in range(1, 6)))
    async with open_core(settings_for(database_url=postgres_url)) as core:
        # Started in this order within one loop turn: nothing but arrival order decides.
        runs = [asyncio.create_task(collect(core.router, f"message {n}")) for n in range(1, 6)]
        await asyncio.gather(*runs)
    conn = await asyncpg.connect(postgres_url)
    try:
        stored = [row["text"] for row in await conn.fetch("SELECT text FROM turns ORDER BY id")]
    finally:
        await conn.close()
    assert stored == [f"message {n}" for n in range(1, 6)]
    last = answers(llm_server)[-1]
    assert last == [*(x for n in range(1, 5) for x in (f"message {n}", f"answer {n}")), "message 5"]
