"""Images sent to the Telegram bot reach the model: the real python-telegram-bot downloads them from the
fake Bot API (getFile + /file/bot<token>/<file_path>), the real core sends them to the fake LLM."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from typing import Any

import pytest

from bot.config import Settings
from core.images import MAX_IMAGE_BYTES
from tests.fakes.llm_server import FakeLLMServer
from tests.fakes.telegram_server import BOT_USERNAME, TOKEN, FakeTelegram
from tests.telegramkit import fake, running_bot

__all__ = ["fake"]

SettingsFor = Callable[..., Settings]
ALICE = 42
GROUP = -1001234567890
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(range(256)) * 4
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + (64).to_bytes(4, "big") * 2 + b"\x08\x06" + bytes(300)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def model_sees(llm: FakeLLMServer, fake: FakeTelegram, chat_id: int) -> list[dict[str, Any]]:
    """The content blocks of the last user message the model got, once the bot has answered."""
    await fake.wait_for(lambda: llm.bodies("anthropic") and fake.bot_messages(chat_id))
    content = llm.bodies("anthropic")[-1]["messages"][-1]["content"]
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def images_in(blocks: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(b["source"]["media_type"], b["source"]["data"]) for b in blocks if b["type"] == "image"]


def text_in(blocks: list[dict[str, Any]]) -> str:
    return "".join(b["text"] for b in blocks if b["type"] == "text")


async def test_a_photo_with_a_caption_in_a_dm_reaches_the_model(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    async with running_bot(fake, settings_for()):
        fake.user_sends_photo(fake.private_chat(ALICE), JPEG, "what does this error mean?")
        blocks = await model_sees(llm_server, fake, ALICE)
    assert images_in(blocks) == [("image/jpeg", b64(JPEG))]  # the largest size, not the thumbnail
    assert text_in(blocks) == "what does this error mean?"
    assert [c.params["file_id"] for c in fake.calls_to("getFile")] == ["AgAC0001file-id"]


async def test_a_png_sent_as_a_file_without_a_caption_reaches_the_model(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    async with running_bot(fake, settings_for()):
        fake.user_sends_document(fake.private_chat(ALICE), PNG, "image/png", "screenshot.png")
        blocks = await model_sees(llm_server, fake, ALICE)
    assert images_in(blocks) == [("image/png", b64(PNG))]
    assert text_in(blocks).strip() == ""


async def test_an_album_is_one_question_with_at_most_four_images(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    photos = [JPEG + bytes([n]) for n in range(5)]
    async with running_bot(fake, settings_for()):
        chat = fake.private_chat(ALICE)
        for n, photo in enumerate(photos):
            fake.user_sends_photo(chat, photo, "compare these" if n == 0 else "", album="1357")
        blocks = await model_sees(llm_server, fake, ALICE)
        await fake.wait_for(lambda: len(fake.files.downloads) == 4)
    assert len(llm_server.bodies("anthropic")) == 1  # one turn for the whole album
    assert images_in(blocks) == [("image/jpeg", b64(p)) for p in photos[:4]]
    assert text_in(blocks) == "compare these\n\n[1 image skipped: max 4 per message]"


async def test_unsupported_and_oversized_files_are_skipped_with_a_note(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    huge = PNG + bytes(MAX_IMAGE_BYTES)
    async with running_bot(fake, settings_for()):
        chat = fake.private_chat(ALICE)
        fake.user_sends_document(chat, b"%PDF-1.7 ...", "application/pdf", "spec.pdf", "summarize")
        blocks = await model_sees(llm_server, fake, ALICE)
        assert images_in(blocks) == []
        assert text_in(blocks) == "summarize\n\n[1 attachment skipped: not an image]"
        fake.user_sends_document(chat, huge, "image/png", "big.png", "and this?")
        await fake.wait_for(lambda: len(llm_server.bodies("anthropic")) == 2)
        blocks = await model_sees(llm_server, fake, ALICE)
    assert images_in(blocks) == []
    assert text_in(blocks) == "and this?\n\n[1 image too large: max 5 MB]"
    assert fake.calls_to("getFile") == []  # both were skipped on what the update said, without a download


@pytest.mark.parametrize("failure", ["getFile", "download"])
async def test_a_failed_download_keeps_the_text(
    fake: FakeTelegram,
    llm_server: FakeLLMServer,
    settings_for: SettingsFor,
    caplog: pytest.LogCaptureFixture,
    failure: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="adapters.telegram")
    async with running_bot(fake, settings_for()):
        if failure == "getFile":
            fake.script_failure("getFile", retry_after=None, description="wrong file_id")
        fake.user_sends_photo(fake.private_chat(ALICE), JPEG, "can you read this?")
        if failure == "download":  # getFile answers, then the file URL gives 404
            for stored in fake.files.by_id.values():
                stored.available = False
        blocks = await model_sees(llm_server, fake, ALICE)
    assert images_in(blocks) == []
    assert text_in(blocks) == "can you read this?\n\n[1 image could not be downloaded]"
    logged = [r.getMessage() for r in caplog.records if "downloading an image failed" in r.getMessage()]
    assert logged and all(TOKEN not in line and TOKEN.split(":")[1] not in line for line in logged)


async def test_in_a_group_a_photo_is_answered_when_its_caption_mentions_the_bot(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    async with running_bot(fake, settings_for()):
        group = fake.group(GROUP)
        fake.user_sends_photo(group, JPEG + b"a", "nice view")  # not for the bot: never downloaded
        fake.user_sends_photo(group, JPEG, f"@{BOT_USERNAME} what is on this chart?")
        blocks = await model_sees(llm_server, fake, GROUP)
    assert images_in(blocks) == [("image/jpeg", b64(JPEG))]
    assert text_in(blocks).strip() == "what is on this chart?"
    assert len(fake.calls_to("getFile")) == 1
