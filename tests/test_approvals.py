"""Tool approvals through the real core: router -> agent -> SDK -> fake LLM server -> store, shown on
an in-memory surface; clicks come in through `Router.click` as an adapter hands them over."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bot.app import Core, open_core
from bot.config import Settings
from core.actions import ApprovalAction, Click, FeedbackAction, RegenerateAction, encode_action, parse_action
from core.inbound import ConversationRef, Sender
from core.present import Outcome
from core.surface import Surface
from core.tools.policy import ToolPolicy
from tests.approvalkit import Notes
from tests.corekit import REF, RecordingSurface, eventually, message
from tests.fakes.llm_server import FakeLLMServer, Reply

SettingsFor = Callable[..., Settings]


def script_tool_then_answer(server: FakeLLMServer, text: str = "hello team") -> None:
    server.script(
        "anthropic",
        Reply.text_then_tools("I will post it.", ("post_note", {"text": text})),
        Reply.text("Done: I posted the note."),
    )


def card_of(surface: RecordingSurface) -> tuple[str, int]:
    """The approval card on the surface: its message id and choice id."""
    for message_id, buttons in surface.buttons.items():
        if buttons is None:
            continue
        action = parse_action(buttons.row[0].action)
        if isinstance(action, ApprovalAction):
            return message_id, action.choice_id
    raise AssertionError(f"no approval card among {surface.messages}")


def has_card(surface: RecordingSurface) -> bool:
    try:
        card_of(surface)
    except AssertionError:
        return False
    return True


def press(action: str, user: str = "alice", message_id: str = "", ref: ConversationRef = REF) -> Click:
    return Click(ref, Sender(user, user.title()), action, uuid.uuid4().hex, message_id, is_dm=True)


def surfaces_of(surface: RecordingSurface) -> Callable[[ConversationRef, str], Surface]:
    return lambda ref, address: surface


async def ask_and_wait_for_card(core: Core, surface: RecordingSurface) -> asyncio.Task[Outcome]:
    task = asyncio.create_task(core.router.answer(message("post a note please"), surface))
    await eventually(lambda: has_card(surface))
    return task


async def test_approve_runs_the_tool_once_and_the_answer_continues(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    notes = Notes()
    script_tool_then_answer(llm_server)
    async with open_core(settings_for(bot_approvers="asker"), extra_tools=[notes.tool()]) as core:
        surface = RecordingSurface()
        task = await ask_and_wait_for_card(core, surface)
        card, choice = card_of(surface)
        assert "post_note" in surface.messages[card] and "hello team" in surface.messages[card]
        assert notes.posted == []  # nothing runs before a person says yes
        approve = encode_action(ApprovalAction(choice, "approve"))
        refused = await core.router.click(press(approve, "mallory", card), surfaces_of(surface))
        assert refused.refused and "Only the person who asked" in refused.text
        assert surface.buttons[card] is not None  # the card still waits
        reply = await core.router.click(press(approve, "alice", card), surfaces_of(surface))
        assert not reply.refused and "runs now" in reply.text
        again = await core.router.click(press(approve, "alice", card), surfaces_of(surface))
        assert again.refused and "Already decided" in again.text
        outcome = await asyncio.wait_for(task, 10)
        assert outcome.delivered
        assert notes.posted == ["hello team"]  # exactly once, whatever was pressed
        assert surface.buttons[card] is None and "approved by Alice" in surface.messages[card]
        assert "Done: I posted the note." in outcome.final_text
        audit = await core.store.audit_entries(datetime.now(UTC) - timedelta(minutes=5))
        assert [(a.tool, a.decision, a.decided_by, a.outcome) for a in audit] == [
            ("post_note", "approved", "alice", "ok")
        ]


async def test_deny_reaches_the_model(llm_server: FakeLLMServer, settings_for: SettingsFor) -> None:
    notes = Notes()
    script_tool_then_answer(llm_server)
    async with open_core(settings_for(), extra_tools=[notes.tool()]) as core:
        surface = RecordingSurface()
        task = await ask_and_wait_for_card(core, surface)
        card, choice = card_of(surface)
        deny = encode_action(ApprovalAction(choice, "deny"))
        reply = await core.router.click(press(deny, "alice", card), surfaces_of(surface))
        assert "will not run" in reply.text
        await asyncio.wait_for(task, 10)
        assert notes.posted == []
        result = llm_server.bodies("anthropic")[-1]["messages"][-1]["content"][0]
        assert result["type"] == "tool_result" and result["is_error"] is True
        assert "denied" in str(result["content"])
        assert "denied by Alice" in surface.messages[card]


async def test_expiry_reaches_the_model_and_a_late_press_is_refused(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    notes = Notes()
    script_tool_then_answer(llm_server)
    async with open_core(settings_for(), extra_tools=[notes.tool()]) as core:
        desk = core.agent.approvals
        assert desk is not None
        desk.settings = dataclasses.replace(desk.settings, timeout_s=0.3, poll_s=0.05)
        surface = RecordingSurface()
        task = await ask_and_wait_for_card(core, surface)
        card, choice = card_of(surface)
        await asyncio.wait_for(task, 10)
        assert "not approved in time" in surface.messages[card] and surface.buttons[card] is None
        late = await core.router.click(
            press(encode_action(ApprovalAction(choice, "approve")), "alice", card), surfaces_of(surface)
        )
        assert late.refused and notes.posted == []
        result = llm_server.bodies("anthropic")[-1]["messages"][-1]["content"][0]
        assert result["is_error"] is True and "in time" in str(result["content"])


async def test_stop_cancels_a_waiting_turn(llm_server: FakeLLMServer, settings_for: SettingsFor) -> None:
    notes = Notes()
    script_tool_then_answer(llm_server)
    async with open_core(settings_for(), extra_tools=[notes.tool()]) as core:
        surface = RecordingSurface()
        task = await ask_and_wait_for_card(core, surface)
        card, choice = card_of(surface)
        stop = await core.router.answer(message("/stop"), RecordingSurface())
        assert stop.delivered
        outcome = await asyncio.wait_for(task, 10)
        assert "Stopped" in outcome.final_text
        assert "did not run" in surface.messages[card] and surface.buttons[card] is None
        late = await core.router.click(
            press(encode_action(ApprovalAction(choice, "approve")), "alice", card), surfaces_of(surface)
        )
        assert late.refused and notes.posted == []
        audit = await core.store.audit_entries(datetime.now(UTC) - timedelta(minutes=5))
        assert [(a.decision, a.outcome) for a in audit] == [("cancelled", "not_run")]


async def test_always_allow_here_skips_the_next_card(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    notes = Notes()
    script_tool_then_answer(llm_server, "first")
    async with open_core(settings_for(), extra_tools=[notes.tool()]) as core:
        surface = RecordingSurface()
        task = await ask_and_wait_for_card(core, surface)
        card, choice = card_of(surface)
        always = encode_action(ApprovalAction(choice, "always"))
        await core.router.click(press(always, "alice", card), surfaces_of(surface))
        await asyncio.wait_for(task, 10)
        script_tool_then_answer(llm_server, "second")
        second = RecordingSurface()
        outcome = await core.router.answer(message("another one"), second)
        assert outcome.delivered and not has_card(second)
        assert notes.posted == ["first", "second"]
        decisions = [
            a.decision for a in await core.store.audit_entries(datetime.now(UTC) - timedelta(hours=1))
        ]
        assert decisions == ["always", "always"]


async def test_policy_deny_and_allow(llm_server: FakeLLMServer, settings_for: SettingsFor) -> None:
    notes = Notes()
    script_tool_then_answer(llm_server)
    settings = settings_for(bot_tool_policy="post_note=deny")
    async with open_core(settings, extra_tools=[notes.tool()]) as core:
        outcome = await core.router.answer(message("post"), RecordingSurface())
        assert outcome.delivered and notes.posted == []
        result = llm_server.bodies("anthropic")[-1]["messages"][-1]["content"][0]
        assert "BOT_TOOL_POLICY" in str(result["content"])
    script_tool_then_answer(llm_server)
    async with open_core(settings_for(bot_tool_policy="post_*=allow"), extra_tools=[notes.tool()]) as core:
        surface = RecordingSurface()
        await core.router.answer(message("post"), surface)
        assert notes.posted == ["hello team"] and not has_card(surface)


def test_policy_rules_pick_the_most_specific() -> None:
    policy = ToolPolicy.parse(
        "post_*=deny, post_message@slack=allow, post_message@slack:C1=ask, fetch_url=ask"
    )
    slack = ConversationRef("slack", "T1", "C9")
    assert policy.decide("post_message", False, slack) == "allow"
    assert policy.decide("post_message", False, dataclasses.replace(slack, channel="C1")) == "ask"
    assert policy.decide("post_message", False, ConversationRef("discord", "", "1")) == "deny"
    assert policy.decide("fetch_url", True, slack) == "ask"
    assert policy.decide("calculator", True, slack) == "allow"  # reads: allowed by default
    assert policy.decide("order_pizza", False, slack) == "ask"  # acts: asks by default
    for bad in ("fetch_url", "fetch_url=maybe", "bad name=ask", "x@=ask"):
        try:
            ToolPolicy.parse(bad)
        except ValueError as error:
            assert "BOT_TOOL_POLICY" in str(error)
        else:
            raise AssertionError(f"{bad!r} was accepted")


async def test_a_waiting_turn_survives_a_restart(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    """Shut down while the card waits: the next process resumes the turn where it waited, the press runs
    the tool once, the answer lands where the question was, and the model is not asked again."""
    notes = Notes()
    script_tool_then_answer(llm_server)
    settings = settings_for()
    async with open_core(settings, extra_tools=[notes.tool()]) as core:
        surface = RecordingSurface()
        task = await ask_and_wait_for_card(core, surface)
        card, choice = card_of(surface)
        assert await core.router.drain(0.1) == 1
        outcome = await asyncio.wait_for(task, 10)
        assert "approval request above stays open" in outcome.final_text
    calls_before = len(llm_server.bodies("anthropic"))
    async with open_core(settings, extra_tools=[notes.tool()]) as core:
        after = RecordingSurface()
        after.messages, after.buttons = dict(surface.messages), dict(surface.buttons)
        assert await core.router.recover("console", surfaces_of(after)) == 1
        await asyncio.sleep(0.2)
        approve = encode_action(ApprovalAction(choice, "approve"))
        reply = await core.router.click(press(approve, "alice", card), surfaces_of(after))
        assert "runs now" in reply.text
        await asyncio.wait_for(core.router.wait_idle(), 10)
        assert notes.posted == ["hello team"]
        assert any("Done: I posted the note." in text for text in after.texts())
        assert len(llm_server.bodies("anthropic")) == calls_before + 1  # only the step after the tool


async def test_feedback_and_regenerate(llm_server: FakeLLMServer, settings_for: SettingsFor) -> None:
    llm_server.script("anthropic", Reply.text("First answer."), Reply.text("Second answer."))
    async with open_core(settings_for()) as core:
        surface = RecordingSurface()
        outcome = await core.router.answer(message("tell me something"), surface)
        answer_id = next(iter(surface.messages))
        row = surface.buttons[answer_id]
        assert row is not None and row.feedback and outcome.delivered
        actions = [parse_action(b.action) for b in row.row]
        turn_id = next(a.turn_id for a in actions if isinstance(a, FeedbackAction))
        for rating, user in (("down", "bob"), ("up", "bob"), ("up", "alice")):
            action = encode_action(FeedbackAction(turn_id, rating))  # type: ignore[arg-type]
            await core.router.click(press(action, user, answer_id), surfaces_of(surface))
        totals = await core.store.rating_totals(
            datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC) + timedelta(hours=1), "model"
        )
        assert [(t.key, t.up, t.down) for t in totals] == [("anthropic:claude-sonnet-5-5", 2, 0)]
        regenerate = encode_action(RegenerateAction(turn_id))
        refused = await core.router.click(press(regenerate, "bob", answer_id), surfaces_of(surface))
        assert refused.refused  # not bob's question, and bob is no admin
        await core.router.click(press(regenerate, "alice", answer_id), surfaces_of(surface))
        await asyncio.wait_for(core.router.wait_idle(), 10)
        assert any(text.startswith("Second answer.") for text in surface.texts())
        state = await core.sessions.get(REF)
        assert [m.text for m in state.messages()] == ["tell me something", "Second answer."]
        sent = llm_server.bodies("anthropic")[-1]["messages"]
        assert [m["role"] for m in sent] == ["user"]  # the first version is not in the history
        old = await core.router.click(press(regenerate, "alice", answer_id), surfaces_of(surface))
        assert old.refused and "latest" in old.text


async def test_a_press_on_another_replica_decides_once(
    llm_server: FakeLLMServer, settings_for: SettingsFor, postgres_url: str
) -> None:
    """Two cores on one PostgreSQL: the turn waits in a, the presses reach b (twice, and once more in
    a): the tool runs once, in a, and a's answer goes on."""
    notes = Notes()
    script_tool_then_answer(llm_server)
    settings = settings_for(database_url=postgres_url)
    async with (
        open_core(settings, extra_tools=[notes.tool()]) as a,
        open_core(settings, extra_tools=[notes.tool()]) as b,
    ):
        surface = RecordingSurface()
        task = await ask_and_wait_for_card(a, surface)
        card, choice = card_of(surface)
        approve = encode_action(ApprovalAction(choice, "approve"))
        replies = await asyncio.gather(
            b.router.click(press(approve, "alice", card), surfaces_of(surface)),
            b.router.click(press(approve, "alice", card), surfaces_of(surface)),
            a.router.click(press(approve, "alice", card), surfaces_of(surface)),
        )
        assert sorted(r.refused for r in replies) == [False, True, True]
        outcome = await asyncio.wait_for(task, 15)
        assert outcome.delivered and "Done: I posted the note." in outcome.final_text
        assert notes.posted == ["hello team"]
