"""Several `bot run` processes for one Discord bot: each connects as one shard (DISCORD_SHARD_ID /
DISCORD_SHARD_COUNT), so Discord sends each only its share of the servers, and DMs to shard 0. Two real
discord.py clients against the fake gateway, which routes events as Discord does; each has its own
core and database, as two processes would (a server's conversations never reach the other shard)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import aiosqlite
import pytest

from bot.config import Settings, SettingsError, load_settings
from core.storage import sqlite_path_from_url
from tests.discordkit import fake, running_bot
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.llm_server import FakeLLMServer

__all__ = ["fake"]  # the fixture (tests/discordkit.py)


def channels_by_shard(fake: FakeDiscord, count: int) -> dict[int, int]:
    """A text channel in a server of each shard (a server's shard is its id's timestamp mod count)."""
    found = {fake.shard_of(fake.guild_id, count): fake.channel_id}
    while len(found) < count:
        time.sleep(0.002)  # the next snowflake's millisecond, so the next server may land elsewhere
        guild = fake.add_guild(f"guild-{len(fake.guilds)}")
        found.setdefault(fake.shard_of(guild, count), fake.add_channel(guild, "general"))
    return found


async def stored_texts(settings: Settings) -> list[str]:
    async with aiosqlite.connect(sqlite_path_from_url(settings.database_url)) as db:
        return [str(row[0]) for row in await db.execute_fetchall("SELECT text FROM turns ORDER BY id")]


async def test_each_shard_answers_its_own_servers_and_shard_0_the_dms(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings], tmp_path: Path
) -> None:
    channels = channels_by_shard(fake, 2)
    dm = fake.add_dm(fake.alice)
    first = settings_for(database_url=f"sqlite:///{tmp_path / 'shard-0.db'}")
    second = settings_for(database_url=f"sqlite:///{tmp_path / 'shard-1.db'}")
    async with (
        running_bot(first, fake, shard_id=0, shard_count=2) as zero,
        running_bot(second, fake, shard_id=1, shard_count=2) as one,
    ):
        assert {s.shard for s in fake.live.values()} == {(0, 2), (1, 2)}
        for bot, shard in ((zero, 0), (one, 1)):
            guilds = {guild.id for guild in bot.adapter.client.guilds}
            assert guilds == {g for g in fake.guilds if fake.shard_of(g, 2) == shard}
        posted = {}
        for shard, channel in channels.items():
            posted[shard] = await fake.user_message(f"question {shard}", channel=channel, mention_bot=True)
        await fake.user_message("a direct question", channel=dm)

        def answered(shard: int) -> bool:
            thread = fake.thread_of(int(posted[shard]["id"]))
            texts = [m["content"] for m in fake.bot_messages_in(thread)] if thread else []
            return any(f"question {shard}" in text for text in texts)

        await fake.wait_for(lambda: answered(0) and answered(1))
        await fake.wait_for(lambda: bool(fake.bot_messages_in(dm)))
        await asyncio.sleep(0.2)  # nothing else arrives late
    zero_texts, one_texts = await stored_texts(first), await stored_texts(second)
    assert [t for t in zero_texts if "question" in t] == [zero_texts[0], "a direct question"]
    assert "question 0" in zero_texts[0]
    assert len(one_texts) == 1 and "question 1" in one_texts[0]


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"DISCORD_SHARD_ID": "0"}, "set DISCORD_SHARD_ID and DISCORD_SHARD_COUNT together"),
        (
            {"DISCORD_SHARD_ID": "2", "DISCORD_SHARD_COUNT": "2"},
            "must be below DISCORD_SHARD_COUNT (2): 0 to 1",
        ),
    ],
)
def test_shard_settings_are_checked(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, str], says: str
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("DISCORD_BOT_TOKEN", "token")
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None)
    assert any(says in line for line in caught.value.lines), caught.value.lines
