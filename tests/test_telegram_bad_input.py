"""Bad input on Telegram never hurts the bot: updates python-telegram-bot cannot parse, odd text, odd
messages, refused settings. The real python-telegram-bot and the real core against the fake Bot API."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from adapters.telegram.errors import TelegramStartError
from adapters.telegram.menu import ADMIN_COMMANDS, admin_chat_ids
from bot.config import Settings
from tests.fakes.llm_server import FakeLLMServer
from tests.fakes.telegram_server import BOT_USERNAME, FakeTelegram
from tests.telegramkit import fake, running_bot
from tests.test_telegram import final_texts, shows
from tests.test_telegram_images import JPEG

__all__ = ["fake"]

SettingsFor = Callable[..., Settings]
ALICE = 42
GROUP = -1001234567890
# A button press missing most of its fields: PTB cannot parse it. (A type the bot does not ask for, such
# as a poll, is never delivered: the fake withholds it, as Telegram does.)
BROKEN_PRESS = {"callback_query": {"id": "1"}}


def skip_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "cannot parse" in r.getMessage()]


async def test_an_update_ptb_cannot_parse_is_skipped_once_and_the_messages_around_it_are_answered(
    fake: FakeTelegram,
    llm_server: FakeLLMServer,
    settings_for: SettingsFor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with running_bot(fake, settings_for()):
        alice = fake.private_chat(ALICE)
        polls_before = len(fake.polls)
        # One batch: the broken update, an album (so the batch is fetched a second time, for the rest
        # of the album) and a plain message.
        bad = fake.push_raw(BROKEN_PRESS)
        fake.user_sends_photo(alice, JPEG, "two photos", album="77")
        fake.user_sends_photo(alice, JPEG + b"2", album="77")
        fake.user_says(fake.private_chat(7, "Bob"), "still there?")
        await final_texts(fake, 7, [shows("echo: still there?")])
        await fake.wait_for(lambda: fake.bot_messages(ALICE))
        assert fake.bot_messages(ALICE)[0].text.startswith("echo: two photos")
        await fake.wait_for(lambda: fake.polls[-1].offset is not None and fake.polls[-1].offset > bad)
        # Asked for at most: the long poll, the album's second look, and a raw look at each; never again.
        again = [p for p in fake.polls[polls_before:] if p.offset is None or p.offset <= bad]
        assert len(again) <= 4
        fake.user_says(alice, "and now?")
        await fake.wait_for(lambda: len(fake.bot_messages(ALICE)) == 2)
    assert [p for p in fake.polls if p.offset is not None and p.offset <= bad] == []  # never re-served
    lines = skip_lines(caplog)
    assert len(lines) == 1 and str(bad) in lines[0]
    # PTB's own CRITICAL line (the whole batch's raw JSON, users' messages included) is not logged.
    assert not [r for r in caplog.records if r.levelno >= logging.CRITICAL]
    assert not [r for r in caplog.records if "still there?" in r.getMessage()]


async def test_text_with_a_lone_surrogate_is_answered_in_a_group_and_in_a_private_chat(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    # The Bot API's JSON can carry "\ud800" (an unpaired UTF-16 half): a str Python cannot encode.
    async with running_bot(fake, settings_for()):
        fake.user_says(fake.group(GROUP), f"@{BOT_USERNAME} broken \ud800 text")
        fake.user_says(fake.private_chat(ALICE), "also \udfff broken")
        await fake.wait_for(lambda: fake.bot_messages(GROUP) and fake.bot_messages(ALICE))
        await asyncio.sleep(0.2)  # let the streamed answers finish
        group_answer, private_answer = fake.bot_messages(GROUP)[0].text, fake.bot_messages(ALICE)[0].text
        assert group_answer.startswith("echo: broken") and group_answer.endswith("text")
        assert private_answer.startswith("echo: also") and private_answer.endswith("broken")


async def test_a_mention_in_a_caption_is_found_and_a_message_without_text_gets_a_clear_reply(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    async with running_bot(fake, settings_for()):
        group = fake.group(GROUP)
        fake.user_sends_photo(group, JPEG, f"@{BOT_USERNAME} what is \ud83d\ude00 this?")  # caption only
        update, _ = fake.message_update(fake.private_chat(ALICE), "")
        del update["message"]["text"]
        update["message"]["sticker"] = {
            "file_id": "s1",
            "file_unique_id": "u1",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "type": "regular",
        }
        fake.push(update)  # a sticker: no text, no image the model can read
        await fake.wait_for(lambda: fake.bot_messages(GROUP) and fake.bot_messages(ALICE))
        await asyncio.sleep(0.2)
        assert fake.bot_messages(GROUP)[0].text.startswith("echo: what is \U0001f600 this?")
        assert "empty message" in fake.bot_messages(ALICE)[0].text  # says what happened and what to do
        assert len(llm_server.bodies("anthropic")) == 1  # the empty one never went to the model


# --- the command menu ---------------------------------------------------------------------------------


def test_admin_chat_ids_takes_telegram_and_bare_user_ids() -> None:
    entries = ["telegram:42", " 7 ", "slack:U01", "discord:role:5", "telegram:-100", "telegram:x", "42"]
    assert admin_chat_ids(entries) == [7, 42]


async def test_admin_commands_are_only_in_the_admins_menus(
    fake: FakeTelegram,
    llm_server: FakeLLMServer,
    settings_for: SettingsFor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="adapters.telegram")
    fake.private_chat(ALICE)  # this admin has talked to the bot; admin 99 never has
    async with running_bot(fake, settings_for(admin_users=["telegram:42", "99", "slack:U0ADMIN"])):
        pass
    everyone = {c["command"] for c in fake.menus["default"]}
    admins = {c["command"] for c in fake.menus[f"chat:{ALICE}"]}
    assert {"report", "audit"} <= ADMIN_COMMANDS
    assert not everyone & ADMIN_COMMANDS and {"start", "help", "usage"} <= everyone
    assert admins == everyone | ADMIN_COMMANDS
    assert set(fake.menus) == {"default", f"chat:{ALICE}"}  # 99: chat not found, logged, not fatal
    assert any("chat 99" in r.getMessage() for r in caplog.records)


# --- settings Telegram refuses ------------------------------------------------------------------------


async def test_a_plain_http_webhook_url_is_warned_about_and_a_refused_one_ends_the_adapter_readably(
    fake: FakeTelegram,
    llm_server: FakeLLMServer,
    settings_for: SettingsFor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="adapters.telegram")
    async with running_bot(fake, settings_for(), webhook=True):  # http://127.0.0.1:…: a local Bot API
        fake.user_says(fake.private_chat(ALICE), "hi")
        await final_texts(fake, ALICE, [shows("echo: hi")])
    warned = [r.getMessage() for r in caplog.records if "plain http://" in r.getMessage()]
    assert len(warned) == 1 and "TELEGRAM_WEBHOOK_URL" in warned[0]
    # Telegram's cloud API refuses such a URL: the adapter ends with a message naming the setting.
    fake.script_failure(
        "setWebhook", retry_after=None, description="bad webhook: An HTTPS URL must be provided for webhook"
    )
    with pytest.raises(TelegramStartError, match=r"(?i)TELEGRAM_WEBHOOK_URL.*https url must be provided"):
        async with running_bot(fake, settings_for(), webhook=True):
            pass


async def test_a_rejected_token_ends_the_adapter_with_a_start_error_without_the_token(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    other = FakeTelegram(token="1:another-bots-token")  # our token is unknown to this Bot API
    await other.start()
    try:
        with pytest.raises(TelegramStartError, match="TELEGRAM_BOT_TOKEN") as raised:
            async with running_bot(other, settings_for()):
                pass
    finally:
        await other.stop()
    assert "AAFake" not in str(raised.value)
    assert isinstance(raised.value, RuntimeError)  # what callers caught before


async def test_a_webhook_secret_header_that_is_not_utf8_is_refused_not_an_error(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    async with running_bot(fake, settings_for(), webhook=True) as bot:
        reader, writer = await asyncio.open_connection("127.0.0.1", bot.http.port)
        writer.write(
            b"POST /telegram/webhook HTTP/1.1\r\nHost: bot\r\n"
            b"X-Telegram-Bot-Api-Secret-Token: \xff\xfe\r\n"
            b"Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
        )
        await writer.drain()
        status = await reader.readline()
        writer.close()
        await writer.wait_closed()
    assert status.split()[1] == b"403"
