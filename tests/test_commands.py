"""The core's commands, as every adapter will reach them: text `/name args` through the router."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bot.app import open_core
from bot.config import Settings
from core.commands import COMMANDS, parse_command
from core.events import AgentEvent, CommandReply
from tests.corekit import collect, done
from tests.fakes.llm_server import FakeLLMServer, Reply, Usage

SettingsFor = Callable[..., Settings]


def reply(events: list[AgentEvent]) -> str:
    assert len(events) == 1 and isinstance(events[0], CommandReply), events
    assert events[0].private
    return events[0].text


@pytest.mark.parametrize(
    ("text", "name", "args"),
    [
        ("/new", "new", ""),
        ("  /Model  openai:gpt-5.4  ", "model", "openai:gpt-5.4"),
        ("/new@team_bot", "new", ""),
        ("/usage@team_bot extra words", "usage", "extra words"),
    ],
)
def test_parse_command(text: str, name: str, args: str) -> None:
    parsed = parse_command(text)
    assert parsed is not None and (parsed.name, parsed.args) == (name, args)


@pytest.mark.parametrize("text", ["hello /new", "/", "/ new", "", "path/to/file"])
def test_not_a_command(text: str) -> None:
    assert parse_command(text) is None


async def test_help_lists_every_command(llm_server: FakeLLMServer, settings_for: SettingsFor) -> None:
    async with open_core(settings_for()) as core:
        text = reply(await collect(core.router, "/help"))
        start = reply(await collect(core.router, "/start"))
    for command in COMMANDS:
        assert f"/{command.name}" in text
    assert start == text
    assert llm_server.requests == []


async def test_unknown_command(llm_server: FakeLLMServer, settings_for: SettingsFor) -> None:
    async with open_core(settings_for()) as core:
        text = reply(await collect(core.router, "/frobnicate now"))
    assert text == "Unknown command /frobnicate. Try /help."


async def test_model_show_switch_and_reset(llm_server: FakeLLMServer, settings_for: SettingsFor) -> None:
    settings = settings_for(bot_models="openai:gpt-5.4,anthropic:claude-haiku-5-5")
    async with open_core(settings) as core:
        shown = reply(await collect(core.router, "/model"))
        switched = reply(await collect(core.router, "/model openai:gpt-5.4"))
        answer = await collect(core.router, "hi")
        bad = reply(await collect(core.router, "/model mistral:large"))
        bare = reply(await collect(core.router, "/model llama3"))
        reset = reply(await collect(core.router, "/model default"))
        await collect(core.router, "back on claude?")
    assert (
        "anthropic:claude-sonnet-5-5" in shown and "openai:gpt-5.4" in shown and "claude-haiku-5-5" in shown
    )
    assert switched == "This conversation now uses openai:gpt-5.4."
    assert done(answer).text == "echo: hi"
    assert llm_server.bodies("openai")[0]["model"] == "gpt-5.4"
    assert "unknown provider 'mistral'" in bad
    assert "cannot tell the provider of 'llama3'" in bare
    assert "default model, anthropic:claude-sonnet-5-5" in reset
    assert llm_server.bodies("anthropic")[-1]["model"] == "claude-sonnet-5-5"


async def test_model_switch_needs_a_configured_provider(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    settings = settings_for(openai_api_key=None, openai_base_url=None, admin_users="alice")
    async with open_core(settings) as core:  # an admin may name any model: still refused
        text = reply(await collect(core.router, "/model openai:gpt-5.4"))
    assert "not configured" in text


async def test_unknown_model_name_fails_with_a_clear_message(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    llm_server.unknown_models = {"claude-nonexistent"}
    async with open_core(settings_for(admin_users="alice")) as core:  # admins may try any model
        switched = reply(await collect(core.router, "/model anthropic:claude-nonexistent"))
        events = await collect(core.router, "hi")
    assert "do not know its price" in switched
    failed = events[-1]
    assert getattr(failed, "reason", "") == "provider_error"
    assert "claude-nonexistent" in getattr(failed, "message", "")


async def test_usage_reports_the_callers_usage(llm_server: FakeLLMServer, settings_for: SettingsFor) -> None:
    llm_server.script("anthropic", Reply.text("priced", usage=Usage(input=1200, output=300)))
    async with open_core(settings_for()) as core:
        empty = reply(await collect(core.router, "/usage"))
        await collect(core.router, "spend something")
        mine = reply(await collect(core.router, "/usage"))
        other = reply(await collect(core.router, "/usage", user="bob"))
    assert "no recorded usage" in empty
    assert "Today (UTC): 1 call, 1,200 in / 300 out tokens, $0.0054" in mine
    assert "anthropic:claude-sonnet-5-5: 1 call, 1,500 tokens" in mine
    assert "no recorded usage" in other


async def test_new_starts_a_fresh_session(llm_server: FakeLLMServer, settings_for: SettingsFor) -> None:
    async with open_core(settings_for()) as core:
        await collect(core.router, "remember the number 42")
        text = reply(await collect(core.router, "/new"))
        await collect(core.router, "what number?")
    assert text.startswith("Started a fresh conversation")
    last = llm_server.bodies("anthropic")[-1]["messages"]
    assert len(last) == 1 and last[0]["content"][0]["text"] == "what number?"
