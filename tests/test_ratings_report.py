"""Answer ratings in the daily report and in /usage, and regenerations in the usage rows: real turns
through the wired core (fake LLM server), real 👍/👎/regenerate presses through `Router.click`, the
real SQLite store, and the report built and rendered as `bot report` does it."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from bot.app import Core, open_core
from bot.config import Settings
from core.actions import Click, FeedbackAction, RegenerateAction, encode_action, parse_action
from core.inbound import ConversationRef, Sender
from core.reports.build import build_daily_report, local_day
from core.reports.markdown import report_markdown
from core.reports.model import RatingRow
from core.surface import Surface
from core.usage import usage_summary
from tests.corekit import REF, RecordingSurface, message
from tests.fakes.llm_server import FakeLLMServer, Reply

SettingsFor = Callable[..., Settings]
BOB = ConversationRef("console", "local", "bob")
SONNET, MINI = "anthropic:claude-sonnet-5-5", "openai:gpt-5.4-mini"


def surfaces_of(surface: RecordingSurface) -> Callable[[ConversationRef, str], Surface]:
    return lambda ref, address: surface


Answer = tuple[str, RecordingSurface]  # the answer's message id, and the surface it is on


async def answered_turn(core: Core, ref: ConversationRef, text: str) -> tuple[int, Answer]:
    """Ask in `ref`; the answer's turn id (from its feedback buttons) and where the answer is."""
    surface = RecordingSurface()
    await core.router.answer(message(text, user=ref.channel, ref=ref), surface)
    for message_id, row in surface.buttons.items():
        if row is not None and row.feedback:
            actions = [parse_action(b.action) for b in row.row]
            turn = next(a.turn_id for a in actions if isinstance(a, FeedbackAction))
            return turn, (message_id, surface)
    raise AssertionError(f"no feedback row under the answer: {surface.messages}")


async def press(
    core: Core, ref: ConversationRef, user: str, action: str, message_id: str, surface: RecordingSurface
) -> None:
    click = Click(ref, Sender(user, user.title()), action, uuid.uuid4().hex, message_id, is_dm=True)
    reply = await core.router.click(click, surfaces_of(surface))
    assert not reply.refused, reply.text


async def rate(core: Core, ref: ConversationRef, user: str, turn: int, rating: str, answer: Answer) -> None:
    action = encode_action(FeedbackAction(turn, rating))  # type: ignore[arg-type]
    await press(core, ref, user, action, *answer)


async def test_the_daily_report_counts_ratings_by_model_and_by_channel(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    llm_server.script("anthropic", Reply.text("Sonnet one."), Reply.text("Sonnet two."))
    llm_server.script("openai", Reply.text("Mini one."))
    settings = settings_for(bot_models=f"{SONNET},{MINI}")
    async with open_core(settings) as core:
        first, answer_one = await answered_turn(core, REF, "question one")
        second, answer_two = await answered_turn(core, REF, "question two")
        await core.sessions.set_model(BOB, MINI)
        third, answer_three = await answered_turn(core, BOB, "question three")
        await rate(core, REF, "alice", first, "down", answer_one)
        await rate(core, REF, "alice", first, "up", answer_one)  # changed: counts once
        await rate(core, REF, "carol", first, "up", answer_one)
        await rate(core, REF, "alice", second, "down", answer_two)
        await rate(core, BOB, "bob", third, "down", answer_three)
        day = local_day(datetime.now(UTC), "UTC")
        report = await build_daily_report(core.store, day, "UTC", core.prices)
    assert report.ratings_by_model == [RatingRow(SONNET, 2, 1), RatingRow(MINI, 0, 1)]
    assert report.ratings_by_channel == [RatingRow("console:alice", 2, 1), RatingRow("console:bob", 0, 1)]
    text = report_markdown(report)
    section = text.split("## Answer ratings\n", 1)[1].split("\n\n", 1)[0]
    assert section.splitlines() == [
        f"- By model `{SONNET}`: 👍 2 · 👎 1 (67% 👍)",
        f"- By model `{MINI}`: 👍 0 · 👎 1 (0% 👍)",
        "- In `console:alice`: 👍 2 · 👎 1 (67% 👍)",
        "- In `console:bob`: 👍 0 · 👎 1 (0% 👍)",
    ]


async def test_a_day_nobody_rated_has_no_ratings_section_and_usage_no_ratings_line(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    llm_server.script("anthropic", Reply.text("An answer."))
    async with open_core(settings_for()) as core:
        await answered_turn(core, REF, "hello")
        report = await build_daily_report(core.store, local_day(datetime.now(UTC), "UTC"), "UTC", core.prices)
        usage = await usage_summary(core.store, "alice", "console")
    assert report.ratings_by_model == [] and report.ratings_by_channel == []
    assert "Answer ratings" not in report_markdown(report) and "Answer ratings" not in usage
    assert "Your usage:" in usage


async def test_usage_shows_the_ratings_on_the_callers_platform(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    llm_server.script("anthropic", Reply.text("One."), Reply.text("Two."))
    async with open_core(settings_for()) as core:
        first, answer_one = await answered_turn(core, REF, "one")
        second, answer_two = await answered_turn(core, BOB, "two")
        await rate(core, REF, "alice", first, "up", answer_one)
        await rate(core, BOB, "bob", second, "up", answer_two)
        await rate(core, BOB, "carol", second, "down", answer_two)
        usage = await usage_summary(core.store, "alice", "console")
        elsewhere = await usage_summary(core.store, "alice", "slack")  # no usage there: no ratings either
    assert usage.splitlines()[-2:] == [
        "Answer ratings on console, everyone (30 days):",
        f"• {SONNET}: 👍 2 · 👎 1 (67% 👍)",
    ]
    assert "Answer ratings" not in elsewhere


async def test_a_regenerated_answer_is_marked_as_a_regeneration_in_the_usage_rows(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    llm_server.script("anthropic", Reply.text("First answer."), Reply.text("Second answer."))
    settings = settings_for()
    async with open_core(settings) as core:
        turn, (message_id, surface) = await answered_turn(core, REF, "tell me something")
        await press(core, REF, "alice", encode_action(RegenerateAction(turn)), message_id, surface)
        await asyncio.wait_for(core.router.wait_idle(), 10)
        assert any(text.startswith("Second answer.") for text in surface.texts())
    path = settings.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT regeneration FROM usage ORDER BY ts").fetchall()
    assert rows == [(0,), (1,)]
