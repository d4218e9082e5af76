"""Images people attach in Slack reach the model: real slack-bolt / slack-sdk against the fake Slack (which
serves shared files behind the bot token, as Slack does), the real core, the fake LLM server."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from adapters.slack.adapter import SlackAdapter
from adapters.slack.images import file_refs
from adapters.slack.settings import SlackSettings
from bot.app import open_core
from bot.config import Settings
from bot.http import HttpServer
from core.adapter import AdapterContext
from core.images import MAX_IMAGES, sniff_image_type
from tests.corekit import RecordingObserver
from tests.fakes.llm_server import FakeLLMServer
from tests.fakes.slack_server import APP_TOKEN, BOT_TOKEN, BOT_USER, FakeSlack, mention

CHANNEL = "C0GENERAL"
DM = "D0ALICE"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(64))
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(64))


@dataclass
class Bot:
    slack: FakeSlack
    llm: FakeLLMServer
    adapter: SlackAdapter
    observer: RecordingObserver

    async def send(self, channel: str, text: str, files: list[dict[str, Any]]) -> str:
        """A person posts a message with files (a DM, or a channel mention); returns the reply thread."""
        event = self.slack.user_message(channel, text, files=files)
        await self.slack.push_event(event if channel.startswith("D") else mention(event))
        return str(event["ts"])

    async def answered(self, channel: str, thread_ts: str) -> None:
        def done() -> bool:
            messages = self.slack.answer_messages(channel, thread_ts)
            return bool(messages) and all(not m.streaming for m in messages) and not self.adapter._tasks

        await self.slack.wait_for(done)

    def last_user_content(self) -> list[dict[str, Any]]:
        messages = self.llm.bodies("anthropic")[-1]["messages"]
        content = [m for m in messages if m["role"] == "user"][-1]["content"]
        return content if isinstance(content, list) else [{"type": "text", "text": content}]

    def sent_images(self) -> list[dict[str, Any]]:
        return [b["source"] for b in self.last_user_content() if b["type"] == "image"]

    def sent_text(self) -> str:
        return "\n".join(b["text"] for b in self.last_user_content() if b["type"] == "text")


@pytest.fixture
def slack_bot(
    llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> Callable[[], contextlib.AbstractAsyncContextManager[Bot]]:
    @contextlib.asynccontextmanager
    async def start() -> AsyncIterator[Bot]:
        fake = FakeSlack()
        await fake.start()
        settings = SlackSettings(
            _env_file=None,  # type: ignore[call-arg]
            bot_token=BOT_TOKEN,
            app_token=APP_TOKEN,
            api_url=fake.api_url,
            stream_interval=0.02,
            edit_interval=0.02,
        )
        http = HttpServer("127.0.0.1", 0)
        async with open_core(settings_for()) as wired:
            observer = RecordingObserver()
            adapter = SlackAdapter(settings, AdapterContext(wired.router, http, observer=observer))
            runner = asyncio.create_task(adapter.run())
            try:
                await fake.wait_for(lambda: adapter.ready() or runner.done())
                yield Bot(fake, llm_server, adapter, observer)
            finally:
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)
                await fake.stop()

    return start


async def test_dm_screenshot_with_a_question_reaches_the_model(slack_bot: Any) -> None:
    async with slack_bot() as bot:
        shot = bot.slack.share_file("screenshot.png", PNG, "image/png")
        thread = await bot.send(DM, "what does this error mean?", [shot])
        await bot.answered(DM, thread)
        assert bot.sent_images() == [
            {"type": "base64", "media_type": "image/png", "data": base64.b64encode(PNG).decode()}
        ]
        assert bot.sent_text() == "what does this error mean?"
        assert bot.slack.shared[shot["id"]].downloads == ["ok"]  # fetched with the bot token


async def test_channel_mention_with_only_images_sends_them_all_concurrently_fetched(
    slack_bot: Any,
) -> None:
    async with slack_bot() as bot:
        files = [
            bot.slack.share_file("photo.jpg", JPEG, "image/jpeg"),
            bot.slack.share_file("chart.png", PNG, "image/png"),
        ]
        thread = await bot.send(CHANNEL, f"<@{BOT_USER}>", files)
        await bot.answered(CHANNEL, thread)
        images = bot.sent_images()
        assert [i["media_type"] for i in images] == ["image/jpeg", "image/png"]
        assert images[0]["data"] == base64.b64encode(JPEG).decode()
        assert "/help" not in bot.sent_text()  # an image alone is a question, not a request for help


async def test_unsupported_oversized_and_extra_attachments_are_skipped_with_notes(
    slack_bot: Any,
) -> None:
    async with slack_bot() as bot:
        pdf = bot.slack.share_file("report.pdf", b"%PDF-1.7 ...", "application/pdf")
        huge = bot.slack.share_file("huge.png", PNG, "image/png", size=6 * 1024 * 1024)
        pngs = [bot.slack.share_file(f"p{i}.png", PNG, "image/png") for i in range(MAX_IMAGES + 1)]
        thread = await bot.send(DM, "look at these", [pdf, huge, *pngs])
        await bot.answered(DM, thread)
        assert len(bot.sent_images()) == MAX_IMAGES
        text = bot.sent_text()
        assert text.startswith("look at these")
        assert "[1 attachment skipped: not an image]" in text
        assert "[1 image skipped: too large, max 5 MB]" in text
        assert f"[1 image skipped: at most {MAX_IMAGES} per message]" in text
        assert bot.slack.shared[pdf["id"]].downloads == []  # never fetched
        assert bot.slack.shared[huge["id"]].downloads == []


async def test_failed_download_keeps_the_text_and_tells_the_model(
    slack_bot: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with slack_bot() as bot:
        broken = bot.slack.share_file("broken.png", PNG, "image/png", fail_status=500)
        fine = bot.slack.share_file("fine.png", PNG, "image/png")
        thread = await bot.send(DM, "compare these two", [broken, fine])
        await bot.answered(DM, thread)
        assert len(bot.sent_images()) == 1
        assert bot.sent_text() == "compare these two\n[1 image could not be downloaded]"
        assert "download failed: HTTP 500" in caplog.text
        assert BOT_TOKEN not in caplog.text


async def test_a_rate_limited_download_is_noted_and_reported(slack_bot: Any) -> None:
    async with slack_bot() as bot:
        limited = bot.slack.share_file("limited.png", PNG, "image/png", fail_status=429)
        thread = await bot.send(DM, "look at this", [limited])
        await bot.answered(DM, thread)
        assert bot.sent_text() == "look at this\n[1 image could not be downloaded]"
        assert bot.observer.rate_limits == [("slack", "files.download")]


async def test_a_rejected_token_gets_the_sign_in_page_not_an_image(slack_bot: Any) -> None:
    async with slack_bot() as bot:
        bot.slack.bot_token = "xoxb-another-token"  # as if the download carried the wrong token
        shot = bot.slack.share_file("screenshot.png", PNG, "image/png")
        thread = await bot.send(DM, "and this?", [shot])
        await bot.answered(DM, thread)
        assert bot.slack.shared[shot["id"]].downloads == ["unauthorized"]
        assert bot.sent_images() == []
        assert bot.sent_text() == "and this?\n[1 image could not be downloaded]"


def test_file_objects_and_image_sniffing() -> None:
    refs = file_refs(
        [
            {"id": "F1", "mimetype": "image/png", "size": 10, "url_private_download": "https://x"},
            {"id": "F2", "mimetype": "image/png", "mode": "external", "url_private": "https://y"},
            {"id": "F3", "mimetype": "image/png", "mode": "hosted", "file_access": "check_file_info"},
            "junk",
        ]
    )
    assert [(r.id, r.url) for r in refs] == [("F1", "https://x"), ("F2", None), ("F3", None)]
    assert sniff_image_type(PNG[:16]) == "image/png"
    assert sniff_image_type(JPEG[:16]) == "image/jpeg"
    assert sniff_image_type(b"GIF89a\x01\x00") == "image/gif"
    assert sniff_image_type(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff_image_type(b"<!DOCTYPE html>") is None
