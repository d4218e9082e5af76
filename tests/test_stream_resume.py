"""A provider stream cut after some text is retried (then the fallback), not ended: the agent takes the cut
step's text back with `TextReset` and the retried step streams again, so the answer never repeats words.

Real SDKs against the fake LLM server, driven through the router as in tests/test_agent.py.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from bot.app import Core, open_core
from bot.config import Settings
from core.conversation import Message
from core.events import AgentEvent, Notice, TextDelta, TextReset, ToolStarted, TurnDone, TurnFailed
from tests.corekit import REF, collect, done, of_type, streamed_text
from tests.fakes.llm_server import FakeLLMServer, ProviderName, Reply, split

SettingsFor = Callable[..., Settings]

MODELS: dict[ProviderName, str] = {
    "anthropic": "anthropic:claude-sonnet-5-5",
    "openai": "openai:gpt-5.4-mini",
}
FULL = "one two three four five six seven eight"


def fast_retries(core: Core) -> None:
    """Keep the settings' attempts, but back off in milliseconds so the tests stay fast."""
    config = core.agent.config
    core.agent.config = replace(config, retry=replace(config.retry, base_delay_s=0.001, max_delay_s=0.005))


def after_last_reset(events: list[AgentEvent]) -> tuple[TextReset | None, str]:
    """The last TextReset (None if there was none) and the text streamed after it."""
    resets = [i for i, e in enumerate(events) if isinstance(e, TextReset)]
    if not resets:
        return None, streamed_text(events)
    reset = events[resets[-1]]
    assert isinstance(reset, TextReset)
    return reset, streamed_text(events[resets[-1] + 1 :])


def kinds(events: list[AgentEvent]) -> list[str]:
    """Event class names with runs of TextDelta collapsed, e.g. ["TextDelta", "TextReset", ...]."""
    names: list[str] = []
    for event in events:
        name = type(event).__name__
        if not (names and name == names[-1] == "TextDelta"):
            names.append(name)
    return names


async def history(core: Core) -> list[Message]:
    return (await core.sessions.get(REF)).messages()


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
async def test_cut_after_text_is_retried_and_reset(
    provider: ProviderName, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    llm_server.script(provider, Reply.cut(after_chunks=2, text=FULL), Reply.text(FULL, chunks=4))
    async with open_core(settings_for(bot_model=MODELS[provider])) as core:
        fast_retries(core)
        events = await collect(core.router, "count")
        totals = {t.model: t for t in await core.store.usage_totals(datetime(2000, 1, 1, tzinfo=UTC))}
        stored = await history(core)
    first_two = "".join(split(FULL, 3)[:2])  # what the cut attempt streamed
    reset_at = events.index(TextReset(""))
    assert streamed_text(events[:reset_at]) == first_two
    assert of_type(events, TextReset) == [TextReset("")]
    assert [n.kind for n in of_type(events, Notice)] == ["retrying"]
    assert kinds(events)[:3] == ["TextDelta", "TextReset", "Notice"]
    assert streamed_text(events[reset_at + 1 :]) == FULL
    assert done(events).text == FULL
    assert stored[-1].role == "assistant" and stored[-1].text == FULL
    assert [m.role for m in stored] == ["user", "assistant"]
    bodies = llm_server.bodies(provider)
    assert len(bodies) == 2 and bodies[0]["messages"] == bodies[1]["messages"]  # the same call, replayed
    usage = totals[MODELS[provider]]
    assert usage.calls == 2  # the cut attempt counts as a failed call; only the second reported tokens
    assert (usage.input_tokens, usage.output_tokens) == (10, 5)


async def test_cut_in_second_step_resets_to_the_first_steps_text(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    llm_server.script(
        "anthropic",
        Reply.text_then_tools("Let me check.", ("current_time", {"timezone": "UTC"})),
        Reply.cut(after_chunks=2, text="It is noon in UTC, more or less."),
        Reply.text("It is noon in UTC.", chunks=3),
    )
    async with open_core(settings_for()) as core:
        fast_retries(core)
        events = await collect(core.router, "what time is it?")
        stored = await history(core)
    reset, rest = after_last_reset(events)
    assert of_type(events, TextReset) == [TextReset("Let me check.\n\n")]  # step 1 and the separator
    assert rest == "It is noon in UTC."
    assert done(events).text == "Let me check.\n\nIt is noon in UTC."
    assert reset is not None and reset.text + rest == done(events).text
    assert len(of_type(events, ToolStarted)) == 1
    assert [m.role for m in stored] == ["user", "assistant", "user", "assistant"]
    assert stored[-1].text == "It is noon in UTC."
    bodies = [b for b in llm_server.bodies("anthropic") if "tools" in b]
    assert bodies[1]["messages"] == bodies[2]["messages"]


async def test_tool_calls_of_a_cut_attempt_are_dropped(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    # Anthropic hands over a tool call when its block ends: cut while the second tool block streams, so
    # the first call had already reached the agent. The retried attempt decides differently.
    calls = [("current_time", {"timezone": "UTC"}), ("current_time", {"timezone": "Asia/Tokyo"})]
    first_tool_frames = 4  # the opening empty fragment + 3 argument fragments (see tests/fakes/llm_wire.py)
    cut = Reply.text_then_tools("Checking.", *calls).with_(cut_after=1 + first_tool_frames)
    llm_server.script("anthropic", cut, Reply.text("No need to check after all."))
    async with open_core(settings_for()) as core:
        fast_retries(core)
        events = await collect(core.router, "time?")
    assert of_type(events, TextReset) == [TextReset("")]
    assert of_type(events, ToolStarted) == []
    assert done(events).text == "No need to check after all."
    assert len(llm_server.bodies("anthropic")) == 2


async def test_every_attempt_cut_fails_with_the_last_attempts_text(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    llm_server.script(
        "anthropic",
        Reply.text_then_tools("Let me check.", ("current_time", {"timezone": "UTC"})),
        Reply.cut(after_chunks=2, text="first try at the answer"),
        Reply.cut(after_chunks=1, text="second try at the answer"),  # the tests allow 2 attempts
    )
    async with open_core(settings_for()) as core:
        fast_retries(core)
        events = await collect(core.router, "what time is it?")
        stored = await history(core)
        again = await collect(core.router, "still there?")  # the fake server rejects an invalid history
    failed = events[-1]
    assert isinstance(failed, TurnFailed) and failed.reason == "provider_error"
    assert "cut off" in failed.message and "ask me to continue" in failed.message
    last_partial = split("second try at the answer", 3)[0]
    assert of_type(events, TextReset) == [TextReset("Let me check.\n\n")]  # only before the retry
    assert after_last_reset(events)[1] == last_partial
    assert failed.partial_text == f"Let me check.\n\n{last_partial}"
    assert [m.role for m in stored] == ["user", "assistant", "user", "assistant"]
    assert stored[-1].text == f"{last_partial} [answer cut off]"
    assert done(again).text == "echo: still there?"


async def test_cut_on_main_model_then_fallback_answers(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    llm_server.script("anthropic", Reply.cut(after_chunks=2, text=FULL), Reply.cut(after_chunks=1, text=FULL))
    llm_server.script("openai", Reply.text("the fallback's whole answer", chunks=3))
    async with open_core(settings_for(bot_fallback_model=MODELS["openai"])) as core:
        fast_retries(core)
        events = await collect(core.router, "count")
        stored = await history(core)
    assert of_type(events, TextReset) == [TextReset(""), TextReset("")]
    assert [n.kind for n in of_type(events, Notice)] == ["retrying", "fallback"]
    assert after_last_reset(events)[1] == "the fallback's whole answer"
    assert done(events).text == "the fallback's whole answer"
    assert stored[-1].text == "the fallback's whole answer"


async def test_turns_survive_random_cuts(llm_server: FakeLLMServer, settings_for: SettingsFor) -> None:
    """50 turns, each reply cut (after some text) with probability 0.2: nearly every turn ends with the
    exact answer. Main model and fallback get 3 attempts each, as in production defaults."""
    rng = random.Random(20240611)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]
    attempts, turns = 3, 50
    settings = settings_for(bot_retry_attempts=attempts, bot_fallback_model=MODELS["openai"])
    results: list[tuple[str, int, list[AgentEvent]]] = []  # (answer, cut replies, events)
    async with open_core(settings) as core:
        fast_retries(core)
        for number in range(turns):
            answer = " ".join(rng.choice(words) for _ in range(rng.randint(3, 12)))
            replies: list[Reply] = []  # exactly the replies this turn will consume
            while len(replies) < 2 * attempts:
                if rng.random() >= 0.2:
                    replies.append(Reply.text(answer, chunks=5))
                    break
                replies.append(Reply.text(answer, chunks=5).with_(cut_after=rng.randint(1, 4)))
            llm_server.script("anthropic", *replies[:attempts])
            llm_server.script("openai", *replies[attempts:])
            events = await collect(core.router, f"turn {number}")
            results.append((answer, sum(r.cut_after is not None for r in replies), events))
        stored = await history(core)
    exact = 0
    for answer, cut, events in results:
        last = events[-1]
        finished = isinstance(last, TurnDone)
        # A reset before every retried attempt; a turn whose every attempt was cut keeps the last text.
        assert len(of_type(events, TextReset)) == (cut if finished else cut - 1)
        if isinstance(last, TurnDone) and last.text == answer:
            assert after_last_reset(events)[1] == answer
            exact += 1
    assert sum(cut for _, cut, _ in results) >= 5  # the faults really happened
    assert exact >= 0.99 * turns
    assert stored[-1].text == results[-1][0]
    assert not any(isinstance(e, TextDelta) and not e.text for _, _, events in results for e in events)
