"""Bad input at the core's front door: text no store can hold, huge messages, odd `/model` names, and
the usage of calls cut short (the real SDKs against the fake LLM server; stores on both backends)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.app import Core, open_core
from bot.config import Settings, SettingsError, load_settings
from core.events import AgentEvent, CommandReply, Notice, TextDelta, TurnFailed, UsageReport
from core.inbound import REPLACEMENT, ConversationRef, InboundMessage, Sender, storable, storable_message
from core.models import MAX_MODEL_ID_CHARS, parse_model_id
from core.router import CUT_NOTICE
from core.usage import plural
from tests.corekit import REF, RecordingSurface, collect, done, eventually, message, of_type
from tests.fakes.llm_server import FakeLLMServer, Reply, Usage

SettingsFor = Callable[..., Settings]

MODELS = {"anthropic": "anthropic:claude-sonnet-5-5", "openai": "openai:gpt-5.4-mini"}


def reply(events: list[AgentEvent]) -> str:
    assert len(events) == 1 and isinstance(events[0], CommandReply), events
    return events[0].text


def last_user_text(server: FakeLLMServer) -> str:
    body = server.requests[-1].body
    content = body["messages"][-1]["content"]
    if isinstance(content, str):  # OpenAI
        return content
    return "".join(
        block.get("text", "") for block in content if isinstance(block, dict)
    )  # Anthropic (may be parts)


# --- text no store can hold -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("plain", "plain"),
        ("lone \ud800 high", f"lone {REPLACEMENT} high"),
        ("lone \udfff low", f"lone {REPLACEMENT} low"),
        ("nul\x00byte", f"nul{REPLACEMENT}byte"),
        ("pair \ud83d\ude00 joined", "pair \U0001f600 joined"),
        ("console \udcff byte", f"console {REPLACEMENT} byte"),  # stdin's surrogateescape of 0xff
        ("tabs\tand\nnewlines stay", "tabs\tand\nnewlines stay"),
    ],
)
def test_storable_replaces_only_what_cannot_be_stored(raw: str, clean: str) -> None:
    assert storable(raw) == clean
    clean.encode("utf-8")  # strict: every result is valid UTF-8


async def test_unstorable_text_is_answered_and_stored_on_both_backends(
    llm_server: FakeLLMServer, settings_for: SettingsFor, database_url: str
) -> None:
    ref = ConversationRef("console", "local", "eve\ud800")
    bad = InboundMessage(ref, Sender("eve\x00", "Eve \udcff"), "hi \ud800 there\x00!", "ev-\udc80-1")
    cleaned = f"hi {REPLACEMENT} there{REPLACEMENT}!"
    async with open_core(settings_for(database_url=database_url)) as core:
        events = [e async for e in core.router.handle(bad)]
        again = [e async for e in core.router.handle(bad)]  # the platform redelivers it
        model = replace(bad, text="/model \ud800\x00", event_id="ev-2")
        refused = [e async for e in core.router.handle(model)]
    assert done(events).text == f"echo: {cleaned}"
    assert again == []  # a duplicate, not a second answer and not a failure
    assert reply(refused).startswith("Cannot switch")
    async with open_core(settings_for(database_url=database_url)) as core:  # what was stored reads back
        history = (await core.sessions.get(storable_message(bad).ref)).messages()
        leftover = await core.store.unfinished_turns()
    assert [m.text for m in history] == [cleaned, f"echo: {cleaned}"]
    assert leftover == []


# --- the size cap -----------------------------------------------------------------------------------


async def test_long_message_is_cut_to_the_cap_and_the_user_is_told(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    text = "".join(f"{n:04d} " for n in range(50))  # 250 characters
    async with open_core(settings_for(bot_max_message_chars=100)) as core:
        surface = RecordingSurface()
        outcome = await core.router.answer(message(text), surface)
        history = (await core.sessions.get(REF)).messages()
    assert outcome.delivered
    assert last_user_text(llm_server) == text[:100]  # the model got what fits
    assert history[0].text == text[:100]  # and that is what is stored
    final = outcome.final_text
    assert final.startswith("echo: 0000 0001")
    assert "(info: Your message was 250 characters long, more than the 100 I take" in final


async def test_a_4_mb_line_goes_to_the_model_as_the_default_cap(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    async with open_core(settings_for()) as core:
        events = await collect(core.router, "x" * 4_000_000)
    notices = [n for n in of_type(events, Notice) if n.kind == CUT_NOTICE]
    assert len(notices) == 1 and "4,000,000 characters" in notices[0].text and "32,000" in notices[0].text
    assert last_user_text(llm_server) == "x" * 32_000
    assert len(llm_server.requests) == 1


async def test_short_messages_get_no_notice(llm_server: FakeLLMServer, settings_for: SettingsFor) -> None:
    async with open_core(settings_for(bot_max_message_chars=100)) as core:
        events = await collect(core.router, "y" * 100)
    assert of_type(events, Notice) == []
    assert done(events).text == "echo: " + "y" * 100


@pytest.mark.parametrize("value", ["10", "2000000", "many"])
def test_the_cap_setting_is_checked(value: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(_env_file=None, anthropic_api_key="sk-test", bot_max_message_chars=value)
    assert any(line.startswith("BOT_MAX_MESSAGE_CHARS:") for line in raised.value.lines)


# --- /model -----------------------------------------------------------------------------------------


async def test_model_refuses_bad_names_without_echoing_them(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    huge = "anthropic:" + "z" * 10_000
    async with open_core(settings_for(bot_models="openai:gpt-5.4")) as core:
        answers = {
            name: reply(await collect(core.router, f"/model {name}"))
            for name in (huge, "claude\x00x", "gpt-5\x07", "gpt 5", "openai:gpt-5.4;rm", "anthropic:")
        }
        state = await core.sessions.get(REF)
    for name, text in answers.items():
        assert text.startswith("Cannot switch"), (name, text)
        assert len(text) < 400, text  # never the 10 KB name back
        assert "Choose one of: anthropic:claude-sonnet-5-5, openai:gpt-5.4 (or /model default)." in text
        assert "\x00" not in text and "\x07" not in text
    assert "10,010 characters long; the limit is 100" in answers[huge]
    assert "characters a model name cannot have" in answers["gpt-5\x07"]
    assert state.record.model is None  # nothing was switched
    assert llm_server.requests == []


async def test_model_offers_only_the_listed_models_to_non_admins(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    settings = settings_for(bot_models="openai:llama3,openai:GPT-5.4", admin_users="boss")
    async with open_core(settings) as core:
        unlisted = reply(await collect(core.router, "/model anthropic:claude-opus-5"))
        bare = reply(await collect(core.router, "/model llama3"))  # a bare name of an offered model
        cased = reply(await collect(core.router, "/model openai:gpt-5.4"))
        boss = reply(await collect(core.router, "/model anthropic:claude-opus-5", user="boss"))
    assert unlisted.startswith("Cannot switch to anthropic:claude-opus-5: this bot does not offer it.")
    assert "openai:llama3" in unlisted
    assert bare.startswith("This conversation now uses openai:llama3.")
    assert cased.startswith("This conversation now uses openai:GPT-5.4.")  # as configured
    assert boss == "This conversation now uses anthropic:claude-opus-5."  # admins may try any model


def test_model_ids_are_checked_in_settings_too() -> None:
    with pytest.raises(ValueError, match="characters a model name cannot have"):
        parse_model_id("openai:llama3 latest")
    with pytest.raises(ValueError, match="the limit is 100") as raised:
        parse_model_id("openai:" + "m" * MAX_MODEL_ID_CHARS)
    assert len(str(raised.value)) < 200
    assert (
        str(parse_model_id("openai:hf.co/user/Model-GGUF:Q4_K_M@2"))
        == "openai:hf.co/user/Model-GGUF:Q4_K_M@2"
    )
    with pytest.raises(SettingsError, match="BOT_MODEL"):
        load_settings(_env_file=None, anthropic_api_key="sk-test", bot_model="anthropic:claude\tx")


# --- usage of calls cut short -----------------------------------------------------------------------


async def _stop_after(core: Core, text: str, ready: Callable[[list[AgentEvent]], bool]) -> list[AgentEvent]:
    """Run a turn, send /stop (what the console's Ctrl-C sends) once `ready(events so far)`, and return
    the turn's events."""
    events: list[AgentEvent] = []

    async def run() -> None:
        async for event in core.router.handle(message(text)):
            events.append(event)

    task = asyncio.create_task(run())
    await eventually(lambda: ready(events))
    assert "Stopping" in reply(await collect(core.router, "/stop"))
    await asyncio.wait_for(task, 10)  # a guard against a hung test, not a speed assert
    return events


async def _usage_rows(core: Core) -> dict[str, Any]:
    totals = await core.store.usage_totals(datetime.now(UTC) - timedelta(days=1))
    return {t.model: t for t in totals}


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
async def test_usage_of_a_call_stopped_mid_stream_is_recorded(
    llm_server: FakeLLMServer, settings_for: SettingsFor, database_url: str, provider: Any
) -> None:
    llm_server.script(
        provider,
        Reply.tool_calls(("calculator", {"expression": "6*7"}), usage=Usage(input=40, output=9)),
        Reply.text("word " * 200, chunks=200, delay_s=0.02),
    )
    settings = settings_for(database_url=database_url, bot_model=MODELS[provider])
    async with open_core(settings) as core:
        events = await _stop_after(core, "count to 200", lambda e: len(of_type(e, TextDelta)) >= 3)
        rows = await _usage_rows(core)
        summary = reply(await collect(core.router, "/usage"))
    failed = events[-1]
    assert isinstance(failed, TurnFailed) and failed.reason == "cancelled"
    assert len(llm_server.requests) == 2
    row = rows[MODELS[provider]]
    assert row.calls == 2  # every request made: the tool step and the one stopped mid-answer
    assert row.input_tokens > 40  # the stopped call's input is estimated from what was sent
    assert row.output_tokens > 9  # and its output from what had streamed
    reports = of_type(events, UsageReport)
    assert len(reports) == 2 and reports[1].output_tokens >= 3
    assert "Today (UTC): 2 calls" in summary


async def test_usage_of_a_call_stopped_before_its_first_token_is_recorded(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    # One provider is enough here: what is recorded does not depend on it (the test above runs both).
    # The fake server's handler sleeps through its 30 s, so its shutdown takes ~1 s.
    provider = "openai"
    llm_server.script(provider, Reply.text("too late").with_(first_delay_s=30.0))
    async with open_core(settings_for(bot_model=MODELS[provider])) as core:
        await _stop_after(core, "think hard", lambda _: llm_server.streaming == 1)
        row = (await _usage_rows(core))[MODELS[provider]]
    assert (row.calls, row.output_tokens) == (1, 0)
    assert row.input_tokens > 0


async def test_usage_of_turns_stopped_by_shutdown_is_recorded(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    llm_server.script("anthropic", Reply.text("word " * 200, chunks=200, delay_s=0.02))
    async with open_core(settings_for()) as core:
        surface = RecordingSurface()
        answer = asyncio.create_task(core.router.answer(message("go on"), surface))
        await eventually(lambda: any("word word" in text for text in surface.texts()))
        assert await core.router.drain(0) == 1
        await answer
        row = (await _usage_rows(core))[MODELS["anthropic"]]
    assert row.calls == len(llm_server.requests) == 1 and row.output_tokens > 0


async def test_a_server_that_never_reports_usage_still_counts_the_call(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    llm_server.script("openai", Reply.text("no numbers from me").with_(send_usage=False))
    async with open_core(settings_for(bot_model=MODELS["openai"])) as core:
        events = await collect(core.router, "hi")
        row = (await _usage_rows(core))[MODELS["openai"]]
    assert done(events).text == "no numbers from me"
    assert row.calls == 1 and row.input_tokens > 0 and row.output_tokens > 0


# --- plurals ----------------------------------------------------------------------------------------


def test_plural() -> None:
    assert [plural(n, "call") for n in (0, 1, 2, 1200)] == ["0 calls", "1 call", "2 calls", "1,200 calls"]
    assert plural(1, "reply", "replies") == "1 reply" and plural(3, "reply", "replies") == "3 replies"


async def test_one_of_everything_reads_in_the_singular(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    llm_server.script("anthropic", Reply.text("ok", usage=Usage(input=1, output=0)))
    async with open_core(settings_for(admin_users="alice", bot_max_steps=1)) as core:
        await collect(core.router, "one")
        usage = reply(await collect(core.router, "/usage"))
        report = reply(await collect(core.router, "/report"))
        llm_server.script("anthropic", Reply.tool_calls(("calculator", {"expression": "1+1"})))
        limited = await collect(core.router, "use a tool")
    step_limit = [n.text for n in of_type(limited, Notice) if n.kind == "step_limit"]
    assert "1 call, 1 in / 0 out tokens" in usage and "1 call, 1 token," in usage
    assert "on **1** request in **1** conversation by **1** active user." in report
    assert "· 1 request · 1 token" in report
    assert step_limit[0].startswith("I stopped after 1 tool step (the step limit)")
    for text in (usage, report, *step_limit):
        for wrong in (
            "1 calls",
            "1 requests",
            "1 tokens",
            "1 conversations",
            "1 active users",
            "1 tool steps",
        ):
            assert wrong not in text
