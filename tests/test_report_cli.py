"""Reports on demand: the admin `report` command in chat and `bot report` on the command line."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path

from bot.app import open_core
from bot.config import Settings
from core.events import CommandReply
from core.storage.base import UsageRecord
from core.storage.sqlite import SQLiteStore
from tests.corekit import collect
from tests.fakes.llm_server import FakeLLMServer, Reply, Usage
from tests.test_cli import bot_env, run_bot

SettingsFor = Callable[..., Settings]


async def test_admin_gets_the_team_report_others_are_refused(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    llm_server.script("anthropic", Reply.text("ok", usage=Usage(input=1200, output=300)))
    async with open_core(settings_for(admin_users="boss", budget_daily_total_usd=1.0)) as core:
        await collect(core.router, "spend", user="alice")
        today = await collect(core.router, "/report", user="boss")
        bad = await collect(core.router, "/report 12/03/2026", user="boss")
        old = await collect(core.router, "/report 2020-01-01", user="boss")
        refused = await collect(core.router, "/report", user="alice")
    text = reply(today)
    assert text.startswith("# Usage report for") and "(UTC)" in text
    assert "**$0.0054** spent on **1** request in" in text
    assert "## Budget" in text
    assert "use YYYY-MM-DD" in reply(bad)
    assert reply(old) == "# Usage report for Wed 2020-01-01 (UTC)\n\nNo activity that day."
    assert reply(refused).startswith("Only admins can see the team's report.")


def reply(events: Sequence[object]) -> str:
    assert len(events) == 1 and isinstance(events[0], CommandReply), events
    return events[0].text


async def seed(path: Path) -> None:
    store = SQLiteStore(str(path))
    await store.open()
    # 23:30 in Berlin on 11 March (UTC+1): belongs to the 11th there, to nobody's 12th.
    for ts, user in (
        (datetime(2026, 3, 11, 22, 30, tzinfo=UTC), "U1"),
        (datetime(2026, 3, 11, 9, tzinfo=UTC), "U2"),
    ):
        await store.record_usage(
            UsageRecord(
                ts=ts,
                provider="anthropic",
                model="claude-sonnet-5-5",
                platform="slack",
                workspace="T1",
                channel="C1",
                user_id=user,
                session_id=1,
                input_tokens=1000,
                output_tokens=100,
                cache_read_tokens=0,
                cache_write_tokens=0,
                cost_usd=0.003,
                latency_ms=5.0,
            )
        )
    await store.close()


async def test_bot_report_prints_any_day(tmp_path: Path) -> None:
    env = bot_env(None, tmp_path, ANTHROPIC_API_KEY="sk-ant-unused", REPORT_TIMEZONE="Europe/Berlin")
    await seed(tmp_path / "cli.db")
    (code, out, err), (code2, out2, err2) = await asyncio.gather(
        run_bot(["report", "--date", "2026-03-11", "--print"], "", env, tmp_path),
        run_bot(["report", "--date", "2026-03-12"], "", env, tmp_path),
    )
    assert code == 0, err
    assert out.startswith("# Usage report for Wed 2026-03-11 (Europe/Berlin)")
    assert "**2** requests" in out and "**2** active users" in out
    assert code2 == 0 and "No activity that day." in out2, err2


async def test_bot_report_usage_errors(tmp_path: Path) -> None:
    env = bot_env(None, tmp_path, ANTHROPIC_API_KEY="sk-ant-unused")
    (bad, _, bad_err), (both, _, _), (post, _, post_err) = await asyncio.gather(
        run_bot(["report", "--date", "yesterday"], "", env, tmp_path),
        run_bot(["report", "--print", "--post"], "", env, tmp_path),
        run_bot(["report", "--post", "--date", str(date(2026, 3, 11))], "", env, tmp_path),
    )
    assert bad == 2 and "not a date: 'yesterday' (use YYYY-MM-DD)" in bad_err
    assert both == 2
    assert post == 2 and "no report destination" in post_err
