"""The console's buttons through the real core: an approval card answered with y / n / a, a "+" / "-"
line rating the answer before it. Piped stdin (as `echo ... | bot chat` gives it) and a terminal, the
real router and store, the fake LLM server."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.console.adapter import WAITS, ConsoleAdapter
from adapters.console.buttons import CARD_HELP, CARD_PROMPT, RATE_HINT
from bot.app import Core, open_core
from bot.config import Settings
from tests.approvalkit import Notes
from tests.fakes.llm_server import FakeLLMServer, Reply

SettingsFor = Callable[..., Settings]


class TerminalStream(io.StringIO):
    def isatty(self) -> bool:
        return True


class Screen:
    """What a chat printed: stdout (answers) and stderr (cards, notices)."""

    def __init__(self, out: io.StringIO, err: io.StringIO) -> None:
        self.out, self.err = out.getvalue(), err.getvalue()


async def chat(core: Core, typed: str, *, interactive: bool = False, terminal: bool = False) -> Screen:
    out = TerminalStream() if terminal else io.StringIO()
    err = out if terminal else io.StringIO()
    console = ConsoleAdapter(
        core.router, stdin=io.StringIO(typed), stdout=out, stderr=err, interactive=interactive, user="alice"
    )
    await console.run()
    return Screen(out, err)


def script_note(server: FakeLLMServer, *texts: str) -> None:
    replies = []
    for text in texts:
        replies += [
            Reply.text_then_tools("I will post it.", ("post_note", {"text": text})),
            Reply.text("Done."),
        ]
    server.script("anthropic", *replies)


def last_tool_result(server: FakeLLMServer) -> dict[str, Any]:
    for body in reversed(server.bodies("anthropic")):
        content = body["messages"][-1]["content"]
        if content and content[0].get("type") == "tool_result":
            return dict(content[0])
    raise AssertionError("no tool result was sent to the model")


async def audit(core: Core) -> list[tuple[str, str, str]]:
    rows = await core.store.audit_entries(datetime.now(UTC) - timedelta(minutes=5))
    return [(row.tool, row.decision, row.outcome) for row in rows]


async def test_y_approves_the_card_and_the_answer_goes_on(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    notes = Notes()
    script_note(llm_server, "hello team")
    async with open_core(settings_for(), extra_tools=[notes.tool()]) as core:
        screen = await chat(core, "post a note please\ny\n")
        rows = await audit(core)
    assert notes.posted == ["hello team"]
    assert "Approval needed: I want to run post_note" in screen.err and CARD_HELP in screen.err
    assert "**" not in screen.err and "`" not in screen.err  # the card is plain text in a terminal
    assert "post_note approved by alice" in screen.err
    assert "Approved: post_note runs now." in screen.err  # the click's reply, as a notice
    assert screen.out == "I will post it.\nDone.\n"  # stdout keeps just the answer
    assert rows == [("post_note", "approved", "ok")]


async def test_n_and_enter_deny(llm_server: FakeLLMServer, settings_for: SettingsFor) -> None:
    notes = Notes()
    script_note(llm_server, "first", "second")
    async with open_core(settings_for(), extra_tools=[notes.tool()]) as core:
        screen = await chat(core, "post one\nn\npost another\n\n")
        rows = await audit(core)
    assert notes.posted == []
    assert screen.err.count("post_note denied by alice") == 2
    assert last_tool_result(llm_server)["is_error"] is True
    assert rows == [("post_note", "denied", "not_run")] * 2


async def test_a_always_allows_the_tool_in_this_conversation(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    notes = Notes()
    script_note(llm_server, "first", "second")
    async with open_core(settings_for(), extra_tools=[notes.tool()]) as core:
        screen = await chat(core, "post one\na\npost another\n")
        rows = await audit(core)
    assert notes.posted == ["first", "second"]  # the second ran without a card
    assert screen.err.count("Approval needed") == 1
    assert "without asking here from now on" in screen.err
    assert [decision for _, decision, _ in rows] == ["always", "always"]


async def test_other_lines_wait_for_the_answer_and_stop_still_works(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    notes = Notes()
    script_note(llm_server, "first", "second")
    async with open_core(settings_for(), extra_tools=[notes.tool()]) as core:
        screen = await chat(core, "post one\nwhat is this?\ny\npost another\n/stop\n")
        rows = await audit(core)
    assert notes.posted == ["first"]
    assert WAITS in screen.err
    assert "what is this?" not in str(llm_server.bodies("anthropic"))  # never sent as a message
    assert "the answer was stopped" in screen.err
    assert rows[0] == ("post_note", "cancelled", "not_run")  # newest first


async def test_the_end_of_piped_input_denies_a_waiting_card(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    notes = Notes()
    script_note(llm_server, "hello")
    async with open_core(settings_for(), extra_tools=[notes.tool()]) as core:
        screen = await chat(core, "post a note\n")  # returns: no hang until the card expires
        rows = await audit(core)
    assert notes.posted == []
    assert "no more input" in screen.err and "post_note denied by alice" in screen.err
    assert rows == [("post_note", "denied", "not_run")]


async def test_a_terminal_prompts_for_the_card(llm_server: FakeLLMServer, settings_for: SettingsFor) -> None:
    notes = Notes()
    script_note(llm_server, "hello")
    async with open_core(settings_for(), extra_tools=[notes.tool()]) as core:
        screen = await chat(core, "post a note\ny\n", interactive=True, terminal=True)
    assert notes.posted == ["hello"]
    shown = screen.out
    assert shown.index("Approval needed") < shown.index(CARD_PROMPT) < shown.index("approved by alice")
    assert f"\x1b[2m{RATE_HINT}\x1b[0m" in shown  # the answer's buttons: one dim hint line


async def test_plus_and_minus_rate_the_answer_before(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    async with open_core(settings_for()) as core:
        screen = await chat(core, "hi\n+\n-\nagain\n+\n")
        now = datetime.now(UTC)
        totals = await core.store.rating_totals(
            now - timedelta(minutes=5), now + timedelta(minutes=1), "model"
        )
    asked = [body["messages"][-1]["content"][0]["text"] for body in llm_server.bodies("anthropic")]
    assert asked == ["hi", "again"]  # "+" and "-" were ratings, not questions
    assert "Thanks for the 👍" in screen.err and "Thanks, noted 👎" in screen.err
    assert [(t.up, t.down) for t in totals] == [(1, 1)]  # "-" replaced the first "+"; one 👍 for "again"
    assert RATE_HINT not in screen.err  # a pipe gets no hints


async def test_without_answer_buttons_plus_is_a_message(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    async with open_core(settings_for(bot_answer_buttons=False)) as core:
        screen = await chat(core, "hi\n+\n", interactive=True, terminal=True)
    asked = [body["messages"][-1]["content"][0]["text"] for body in llm_server.bodies("anthropic")]
    assert asked == ["hi", "+"]
    assert RATE_HINT not in screen.out
