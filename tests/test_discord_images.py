"""Images users attach to Discord messages reach the model: real discord.py against the fake Discord (whose
CDN serves the attachments at signed URLs), the real core, the fake LLM recording what the model got."""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from bot.config import Settings
from core.images import MAX_IMAGE_BYTES, MAX_IMAGES
from tests.discordkit import fake, running_bot
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.llm_server import FakeLLMServer, ProviderName

__all__ = ["fake"]  # the fixture (tests/discordkit.py)

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 32 + b"\xff\xd9"


def png(width: int = 2, height: int = 1) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height)))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def last_user_content(
    llm_server: FakeLLMServer, provider: ProviderName = "anthropic"
) -> list[dict[str, Any]]:
    bodies = llm_server.bodies(provider)
    assert bodies, "the model was never called"
    content: list[dict[str, Any]] = bodies[-1]["messages"][-1]["content"]
    return content


def texts(content: list[dict[str, Any]]) -> str:
    return "\n".join(block["text"] for block in content if block["type"] == "text")


async def test_screenshot_with_a_mention_reaches_the_model(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    image = png()
    async with running_bot(settings_for(), fake):
        shot = fake.attachment("screenshot.png", image)
        message = await fake.user_message("what's wrong here?", mention_bot=True, attachments=[shot])
        await fake.wait_for(lambda: fake.thread_of(int(message["id"])) is not None)
        thread = fake.thread_of(int(message["id"]))
        assert thread is not None
        await fake.wait_for(lambda: bool(fake.bot_messages_in(thread)))
    content = last_user_content(llm_server)
    assert texts(content) == "what's wrong here?"
    [block] = [b for b in content if b["type"] == "image"]
    assert block["source"] == {
        "type": "base64",
        "media_type": "image/png",
        "data": base64.b64encode(image).decode(),
    }
    assert fake.channels[thread]["name"] == "what's wrong here?"
    assert fake.cdn.gets == [shot["id"]]


async def test_photo_alone_in_a_dm_reaches_an_openai_model(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    dm = fake.add_dm(fake.alice)
    async with running_bot(settings_for(bot_model="openai:gpt-5.4-mini"), fake):
        # No content type from Discord: the filename says JPEG.
        photo = fake.attachment("IMG_0001.JPG", JPEG, content_type=None, channel=dm)
        await fake.user_message("", channel=dm, attachments=[photo])
        await fake.wait_for(lambda: bool(fake.bot_messages_in(dm)))
    content = last_user_content(llm_server, "openai")
    [image] = [b for b in content if b["type"] == "image_url"]
    assert image["image_url"]["url"] == "data:image/jpeg;base64," + base64.b64encode(JPEG).decode()


async def test_unsupported_oversized_and_extra_attachments_are_skipped_with_a_note(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    dm = fake.add_dm(fake.alice)
    async with running_bot(settings_for(), fake):
        files = [
            fake.attachment("notes.pdf", b"%PDF-1.7", content_type="application/pdf", channel=dm),
            fake.attachment("huge.png", png() + b"\x00" * MAX_IMAGE_BYTES, channel=dm),
            *(fake.attachment(f"shot{n}.png", png(n + 1), channel=dm) for n in range(MAX_IMAGES + 1)),
        ]
        await fake.user_message("see attached", channel=dm, attachments=files)
        await fake.wait_for(lambda: bool(fake.bot_messages_in(dm)))
    content = last_user_content(llm_server)
    images = [b for b in content if b["type"] == "image"]
    assert [b["source"]["data"] for b in images] == [
        base64.b64encode(png(n + 1)).decode() for n in range(MAX_IMAGES)
    ]
    assert texts(content) == (
        "see attached\n"
        "[image huge.png too large: max 5 MB]\n"
        "[1 attachment skipped: not an image]\n"
        "[1 image skipped: at most 4 per message]"
    )
    # Skipped files are never downloaded.
    assert sorted(fake.cdn.gets) == sorted(f["id"] for f in files[2 : 2 + MAX_IMAGES])


@pytest.mark.parametrize("status", [404, 500])
async def test_failed_download_keeps_the_text(
    fake: FakeDiscord,
    llm_server: FakeLLMServer,
    settings_for: Callable[..., Settings],
    status: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dm = fake.add_dm(fake.alice)
    async with running_bot(settings_for(), fake):
        good = fake.attachment("ok.png", png(), channel=dm)
        broken = fake.attachment("gone.png", png(3), channel=dm)
        fake.cdn.failing[broken["id"]] = status
        await fake.user_message("two screenshots", channel=dm, attachments=[good, broken])
        await fake.wait_for(lambda: bool(fake.bot_messages_in(dm)))
    content = last_user_content(llm_server)
    assert texts(content) == "two screenshots\n[image gone.png could not be downloaded]"
    [image] = [b for b in content if b["type"] == "image"]
    assert image["source"]["data"] == base64.b64encode(png()).decode()
    assert f"could not download Discord attachment {broken['id']}" in caplog.text
    assert "fake-discord-bot-token" not in caplog.text


async def test_a_tampered_url_is_refused_by_the_fake_cdn(fake: FakeDiscord) -> None:
    attachment = fake.attachment("a.png", png())
    async with aiohttp.ClientSession() as session:
        async with session.get(attachment["url"]) as response:
            assert response.status == 200 and response.content_type == "image/png"
            assert await response.read() == png()
        unsigned = attachment["url"].split("?")[0]
        async with session.get(unsigned) as response:
            assert response.status == 404
