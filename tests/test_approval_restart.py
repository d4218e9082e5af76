"""kill -9 while an approval card waits: `bot run` (a real process: python-telegram-bot, the core,
SQLite) shows the card, is SIGKILLed, and is started again on the same database. The approver's press,
made after the restart, runs the tool exactly once and the answer lands in the same chat; the model is
not asked the first step again."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
from pathlib import Path

from tests.fakes.llm_server import FakeLLMServer, Reply
from tests.fakes.telegram_server import BotMessage, FakeTelegram
from tests.telegramkit import fake
from tests.test_telegram_restart import bot_env, bot_process, output, polling

__all__ = ["fake"]

ALICE = 4242


def audit_rows(database: Path) -> list[tuple[str, str, str]]:
    with contextlib.closing(sqlite3.connect(database)) as db:
        rows = db.execute("SELECT tool, decision, outcome FROM audit ORDER BY id").fetchall()
    return [(str(a), str(b), str(c)) for a, b, c in rows]


async def test_a_card_survives_kill_9_and_the_press_after_restart_runs_the_tool_once(
    fake: FakeTelegram, llm_server: FakeLLMServer, tmp_path: Path
) -> None:
    llm_server.script(
        "anthropic",
        Reply.text_then_tools("Let me look at the clock.", ("current_time", {"timezone": "UTC"})),
        Reply.text("It is noon, give or take."),
    )
    database = tmp_path / "bot.db"
    env = bot_env(fake, llm_server, database) | {"BOT_TOOL_POLICY": "current_time=ask"}
    log = tmp_path / "bot.log"
    alice = fake.user(ALICE, "Alice")

    def card() -> BotMessage | None:
        for message in fake.bot_messages(ALICE):
            if any(data.startswith("ap:") for _, data in message.buttons()):
                return message
        return None

    async with bot_process(env, log) as first:
        await polling(fake, first, log)
        fake.user_says(fake.private_chat(ALICE, "Alice"), "what time is it?")
        shown: BotMessage = await fake.wait_for(card, within=30)
        first.send_signal(signal.SIGKILL)
        await first.wait()
    assert len(llm_server.bodies("anthropic")) == 1

    async with bot_process(env, log) as second:
        await polling(fake, second, log)
        fake.press(ALICE, shown.message_id, alice, label="Approve")

        def answered() -> bool:
            return any("It is noon" in m.text for m in fake.bot_messages(ALICE))

        try:
            await fake.wait_for(answered, within=30)
        except AssertionError:
            raise AssertionError(output(log)) from None
    assert audit_rows(database) == [("current_time", "approved", "ok")]  # ran once, after the press
    assert len(llm_server.bodies("anthropic")) == 2  # the step after the tool; the first was not redone
    final = next(m for m in fake.bot_messages(ALICE) if "It is noon" in m.text)
    assert final.message_id > shown.message_id  # below the card, in the same chat
    assert not (fake.messages[(ALICE, shown.message_id)].keyboard or [])  # the card was decided
