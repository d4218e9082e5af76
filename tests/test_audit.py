"""The audit of tool calls as people read it: `bot audit` (a real subprocess on a seeded database) and
`/audit` (admins only, through the router), both formatted by core/audit.py."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.app import open_core
from bot.config import Settings
from core.audit import audit_line, audit_markdown, audit_table, conversation, parse_since, span
from core.commands import COMMANDS
from core.storage import open_store
from core.storage.base import AuditRecord
from tests.corekit import collect
from tests.fakes.llm_server import FakeLLMServer
from tests.test_cli import bot_env, run_bot

SettingsFor = Callable[..., Settings]
UTC_ZONE = ZoneInfo("UTC")
NOW = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)


def row(minutes_ago: float, **changes: object) -> AuditRecord:
    values: dict[str, object] = {
        "ts": datetime.now(UTC) - timedelta(minutes=minutes_ago),
        "platform": "slack",
        "conversation_key": "slack|T1|C0123|1700.1",
        "turn_id": 1,
        "asked_by": "U_ALICE",
        "tool": "post_message",
        "arguments": "channel=C0123, text=Hello team",
        "decision": "approved",
        "decided_by": "U_BOB",
        "waited_ms": 12_400.0,
        "duration_ms": 310.0,
        "outcome": "ok",
    }
    values.update(changes)
    return AuditRecord(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", NOW - timedelta(hours=24)),
        ("7d", NOW - timedelta(days=7)),
        (" 30M ", NOW - timedelta(minutes=30)),
        ("2w", NOW - timedelta(weeks=2)),
        ("2026-03-01", datetime(2026, 3, 1, tzinfo=UTC)),
    ],
)
def test_since_reads_durations_and_dates(text: str, expected: datetime) -> None:
    assert parse_since(text, NOW, UTC_ZONE) == expected


def test_a_since_date_starts_in_the_report_timezone() -> None:
    start = parse_since("2026-03-01", NOW, ZoneInfo("Europe/Berlin"))
    assert start == datetime(2026, 2, 28, 23, 0, tzinfo=UTC)


@pytest.mark.parametrize("text", ["yesterday", "24", "0h", "7 days", "2026-13-01", "-1d", ""])
def test_a_bad_since_says_what_to_write(text: str) -> None:
    with pytest.raises(ValueError, match="cannot read") as error:
        parse_since(text, NOW, UTC_ZONE)
    assert "24h" in str(error.value) or "more than 0" in str(error.value)


def test_spans_and_conversations_read_well() -> None:
    assert [span(v) for v in (0, 350, 2_400, 65_000, 7_380_000)] == ["-", "350ms", "2.4s", "1m 05s", "2h 03m"]
    assert conversation("slack|T1|C0123|1700.1") == "T1/C0123/1700.1"
    assert conversation("telegram||-1001|") == "-1001"


def test_the_table_has_every_column_and_one_line_per_call() -> None:
    rows = [
        row(1),
        row(
            5,
            decision="allowed",
            decided_by="",
            waited_ms=0.0,
            tool="fetch_url",
            arguments="url=https://x.test",
        ),
        row(
            9,
            decision="expired",
            decided_by="",
            duration_ms=0.0,
            outcome="not_run",
            detail="nobody approved it",
        ),
        row(12, arguments="text=" + "long " * 40, outcome="error", detail="HTTP 500\nfrom the server"),
    ]
    table = audit_table(rows, UTC_ZONE).splitlines()
    header = table[0].split()
    assert header[:2] == ["time", "platform"] and header[-1] == "outcome"
    for column in (
        "conversation",
        "asked",
        "tool",
        "arguments",
        "decision",
        "decided",
        "waited",
        "ran",
        "outcome",
    ):
        assert column in header
    assert set(table[1]) == {"-", " "}
    assert len(table) == 2 + len(rows)
    first, allowed, expired, failed = table[2:]
    assert "T1/C0123/1700.1" in first and "U_ALICE" in first and "U_BOB" in first
    assert "12.4s" in first and "310ms" in first and first.rstrip().endswith("ok")
    assert "policy" in allowed and "fetch_url" in allowed
    assert "timeout" in expired and "not run: nobody approved it" in expired
    assert "…" in failed and "error: HTTP 500 from the server" in failed  # long cells cut, one line each


def test_the_chat_list_is_compact_markdown() -> None:
    line = audit_line(row(1, arguments="text=`rm -rf`"), UTC_ZONE)
    assert line.startswith("• ") and "`post_message` `text='rm -rf'`" in line
    assert "approved by U_BOB after 12.4s; ok in 310ms" in line and "slack T1/C0123/1700.1" in line
    since = datetime(2026, 3, 7, tzinfo=UTC)
    assert audit_markdown([], since, UTC_ZONE) == "No tool calls since 2026-03-07 00:00 (UTC)."
    listed = audit_markdown([row(1), row(2)], since, UTC_ZONE).splitlines()
    assert listed[0].startswith("**Tool calls since 2026-03-07 00:00 (UTC)**") and len(listed) == 3


# --- `/audit` -------------------------------------------------------------------------------------------


async def seed(database_url: str, rows: list[AuditRecord]) -> None:
    store = open_store(database_url)
    await store.open()
    try:
        for record in rows:
            await store.record_audit(record)
    finally:
        await store.close()


async def test_audit_command_is_for_admins(llm_server: FakeLLMServer, settings_for: SettingsFor) -> None:
    async with open_core(settings_for(admin_users="console:alice")) as core:
        for record in [row(60 * 24 * 2, tool="old_tool"), *(row(i) for i in range(25))]:
            await core.store.record_audit(record)
        listed = (await collect(core.router, "/audit"))[0]
        recent = (await collect(core.router, "/audit 1d"))[0]
        bad = (await collect(core.router, "/audit soon"))[0]
        refused = (await collect(core.router, "/audit", user="bob"))[0]
        helped = (await collect(core.router, "/help"))[0]
    text = getattr(listed, "text", "")
    assert text.count("\n• ") == 20  # the latest 20
    assert "old_tool" not in text  # two days old: past 20 newer rows
    assert "old_tool" not in getattr(recent, "text", "")
    assert getattr(bad, "text", "").startswith("Cannot read 'soon'")
    assert getattr(refused, "text", "") == "Only admins can see the audit of tool calls."
    assert "/audit" in getattr(helped, "text", "")
    assert next(c for c in COMMANDS if c.name == "audit").admin_only
    assert llm_server.requests == []


# --- `bot audit` ----------------------------------------------------------------------------------------


async def test_bot_audit_prints_the_table(tmp_path: Path) -> None:
    env = bot_env(None, tmp_path, ANTHROPIC_API_KEY="k")
    await seed(
        env["DATABASE_URL"],
        [
            row(3 * 24 * 60, tool="old_tool"),
            row(10, platform="telegram", conversation_key="telegram||-1001|", tool="tg_tool"),
            row(5),
        ],
    )
    code, out, err = await run_bot(["audit"], "", env, tmp_path)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("Tool calls since ") and "(UTC)" in lines[0]
    assert lines[2].split()[:2] == ["time", "platform"]
    assert len(lines) == 6  # the title, a blank line, the header, its rule, two rows
    assert "old_tool" not in out and out.index("post_message") < out.index("tg_tool")  # newest first
    code, out, _ = await run_bot(["audit", "--since", "7d", "--platform", "Telegram"], "", env, tmp_path)
    assert code == 0 and "tg_tool" in out and "post_message" not in out and "on telegram" in out
    code, out, _ = await run_bot(["audit", "--since", "7d", "--limit", "1"], "", env, tmp_path)
    assert "post_message" in out and "tg_tool" not in out and "the newest 1" in out
    code, out, _ = await run_bot(["audit", "--platform", "discord"], "", env, tmp_path)
    assert code == 0 and out.startswith("No tool calls on discord since ")


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--since", "last week"], "cannot read 'last week'"),
        (["--since", "2026-02-30"], "cannot read '2026-02-30'"),
        (["--limit", "0"], "not a number of rows"),
    ],
)
async def test_bot_audit_bad_arguments_exit_2(tmp_path: Path, args: list[str], said: str) -> None:
    code, out, err = await run_bot(
        ["audit", *args], "", bot_env(None, tmp_path, ANTHROPIC_API_KEY="k"), tmp_path
    )
    assert code == 2 and out == ""
    assert said in err and "Traceback" not in err
