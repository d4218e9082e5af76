"""Durable inbound: Telegram forgets an update (a higher getUpdates offset, or a webhook delivery's 2xx)
only once its turn is stored. The real python-telegram-bot and the real core against the fake Bot API;
the fake's `on_confirm` hook looks into the store at the very moment an update is confirmed."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from bot.config import Settings
from tests.fakes.llm_server import FakeLLMServer, Reply
from tests.fakes.telegram_server import BOT_USERNAME, FakeTelegram
from tests.telegramkit import Bot, fake, running_bot
from tests.test_telegram import final_texts, shows
from tests.test_telegram_images import JPEG, images_in, model_sees

__all__ = ["fake"]

SettingsFor = Callable[..., Settings]
ALICE = 42
GROUP = -1001234567890


def watch_confirmations(fake: FakeTelegram, bot: Bot) -> dict[int, bool | None]:
    """update_id -> whether its event was already claimed (its turn stored) when Telegram forgot it;
    None for an update that is no message."""
    seen: dict[int, bool | None] = {}

    async def on_confirm(updates: list[dict[str, Any]]) -> None:
        for update in updates:
            message = update.get("message")
            if not isinstance(message, dict) or not isinstance(message.get("chat"), dict):
                seen[update["update_id"]] = None
                continue
            event_id = f"{message['chat']['id']}:{message['message_id']}"
            # claim_event is False when the event was claimed before: by the turn's admission.
            seen[update["update_id"]] = not await bot.core.store.claim_event("telegram", event_id)

    fake.on_confirm = on_confirm
    return seen


async def test_polling_confirms_an_update_only_after_its_turn_is_stored_and_skips_one_it_cannot_parse(
    fake: FakeTelegram,
    llm_server: FakeLLMServer,
    settings_for: SettingsFor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="adapters.telegram")
    llm_server.script("anthropic", Reply.text("slow one", delay_s=0.3))  # answering never holds up polling
    async with running_bot(fake, settings_for()) as bot:
        confirmed = watch_confirmations(fake, bot)
        alice, bob = fake.private_chat(ALICE), fake.private_chat(7, "Bob")
        fake.user_says(alice, "one")
        bad = fake.push_raw({"message": {"message_id": 1, "date": 0, "chat": 5}})  # PTB cannot parse it
        fake.user_says(bob, "two")
        fake.user_says(fake.group(GROUP), f"@{BOT_USERNAME} three")
        await final_texts(fake, 7, [shows("echo: two")])
        await final_texts(fake, GROUP, [shows("echo: three")])
        await final_texts(fake, ALICE, [shows("slow one")])
        await fake.wait_for(lambda: len(confirmed) == 4)
    assert confirmed.pop(bad) is None
    assert list(confirmed.values()) == [True, True, True]  # each stored before Telegram forgot it
    assert sum(bad in ids for ids in fake.served) == 2  # served, fetched once more as raw JSON, skipped
    skipped = [r for r in caplog.records if "cannot parse" in r.getMessage()]
    assert len(skipped) == 1 and str(bad) in skipped[0].getMessage()


async def test_a_webhook_delivery_is_answered_only_after_its_turn_is_stored(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    async with running_bot(fake, settings_for(), webhook=True) as bot:
        confirmed = watch_confirmations(fake, bot)
        fake.user_says(fake.private_chat(ALICE), "first")
        bad = fake.push_raw({"message": {"message_id": 1, "date": 0, "chat": 5}})
        fake.user_says(fake.private_chat(7, "Bob"), "second")
        await final_texts(fake, ALICE, [shows("echo: first")])
        await final_texts(fake, 7, [shows("echo: second")])
        await fake.wait_for(lambda: len(confirmed) == 3)
    assert confirmed == {bad - 1: True, bad: None, bad + 1: True}
    assert fake.deliveries == [200, 200, 200]  # the unparseable one is acknowledged, not redelivered


async def test_polling_pauses_while_draining_so_telegram_keeps_new_messages(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    async with running_bot(fake, settings_for()) as bot:
        bot.core.router.accepting = False  # shutting down: running turns finish, nothing new starts
        fake.user_says(fake.private_chat(ALICE), "during the restart")
        await asyncio.sleep(1.5)  # longer than a long poll (1 s here)
        assert not fake.bot_messages(ALICE) and not llm_server.requests  # no "restarting" reply either
        assert fake.served and fake.served[-1] == [fake.served[0][0]]  # fetched, never confirmed
        bot.core.router.accepting = True  # (the next process, in real life)
        await final_texts(fake, ALICE, [shows("echo: during the restart")])


async def test_a_polling_conflict_backs_off_and_shutdown_does_not_wait_for_the_long_poll(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    async with running_bot(fake, settings_for()):
        fake.webhook = {"url": "http://127.0.0.1:9/elsewhere"}  # set by someone else: getUpdates -> 409
        started = time.monotonic()
        await asyncio.sleep(2.5)
        conflicts = [p for p in fake.polls if p.at > started]
        assert 1 <= len(conflicts) <= 3  # 1 s, then 1.5 s, ... not a hot loop
        fake.webhook = None
        fake.user_says(fake.private_chat(ALICE), "back")
        await final_texts(fake, ALICE, [shows("echo: back")])
    polls_before = len(fake.polls)
    async with running_bot(fake, settings_for(), poll_timeout=30) as bot:
        await fake.wait_for(lambda: len(fake.polls) > polls_before)  # in a 30 s long poll now
        await asyncio.sleep(0.2)
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 1.0 and not bot.adapter.ready()


async def test_an_album_split_over_two_batches_is_one_question(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    async with running_bot(fake, settings_for()):
        chat = fake.private_chat(ALICE)
        fake.user_sends_photo(chat, JPEG, "compare these", album="2468")
        await fake.wait_for(lambda: fake.served)  # the first photo came back alone...
        fake.user_sends_photo(chat, JPEG + b"2", album="2468")  # ...the second one a moment later
        blocks = await model_sees(llm_server, fake, ALICE)
    assert len(llm_server.bodies("anthropic")) == 1 and len(images_in(blocks)) == 2
