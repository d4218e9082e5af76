"""The presenter's policy, on an in-memory surface: what each turn event shows, what is retried."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

from core.actions import Buttons
from core.delivery import FinalRetry, Pressure
from core.events import (
    AgentEvent,
    CommandReply,
    Notice,
    Refused,
    TextDelta,
    TextReset,
    ToolFinished,
    ToolStarted,
    TurnDone,
    TurnFailed,
)
from core.present import EMPTY_ANSWER, Outcome, Presenter
from core.surface import DeliveryError, Note, StreamClosed
from tests.corekit import RecordingSurface

FAST = FinalRetry(deadline_s=5.0, base_delay_s=0.01, max_delay_s=0.05)


async def scripted(*events: AgentEvent, pause_s: float = 0.0) -> AsyncIterator[AgentEvent]:
    for event in events:
        if pause_s:
            await asyncio.sleep(pause_s)
        yield event


def words(text: str) -> list[TextDelta]:
    return [TextDelta(piece) for piece in text.split(" ") for piece in (piece, " ")][:-1]


def throttled(count: int, retry_after: float = 0.05) -> list[Exception]:
    return [DeliveryError("429", transient=True, retry_after=retry_after) for _ in range(count)]


async def present(surface: RecordingSurface, *events: AgentEvent, pause_s: float = 0.0) -> Outcome:
    return await Presenter(surface, retry=FAST).present(scripted(*events, pause_s=pause_s))


async def test_streamed_answer_ends_as_exactly_the_models_text() -> None:
    surface = RecordingSurface()
    text = "The quick brown fox jumps over the lazy dog."
    outcome = await present(surface, *words(text), TurnDone(text), pause_s=0.005)
    assert surface.texts() == [text]
    assert outcome.delivered and outcome.final_text == text
    assert surface.calls.count("edit") >= 1  # it streamed: posted, then edited


async def test_long_answers_are_split_within_the_limit() -> None:
    surface = RecordingSurface()
    text = " ".join(f"word{n}" for n in range(200))
    await present(surface, *words(text), TurnDone(text))
    parts = surface.texts()
    assert len(parts) > 1 and all(len(part) <= 200 for part in parts)
    assert "".join(parts) == text


async def test_a_429_storm_skips_interim_edits_and_the_final_text_still_lands() -> None:
    surface = RecordingSurface()
    surface.fail = {"edit": throttled(30, retry_after=0.02), "post": throttled(3, retry_after=0.02)}
    text = "one two three four five six seven eight nine ten"
    outcome = await present(surface, *words(text), TurnDone(text), pause_s=0.003)
    assert surface.texts() == [text]
    assert outcome.delivered


async def test_transient_failures_of_the_final_post_are_retried() -> None:
    surface = RecordingSurface()
    surface.fail = {"post": [DeliveryError("500", transient=True), DeliveryError("timeout", transient=True)]}
    await present(surface, TurnDone("hello there"))
    assert surface.texts() == ["hello there"]
    assert surface.calls.count("post") == 3  # the placeholder failed and was skipped; the final retried


async def test_a_permanent_refusal_is_not_retried_and_is_reported() -> None:
    surface = RecordingSurface()
    surface.fail = {"post": [DeliveryError("403 forbidden", transient=False)] * 5}
    outcome = await present(surface, TurnDone("hello"))
    assert not outcome.delivered and "forbidden" in outcome.error
    assert surface.calls.count("post") == 2  # the placeholder (skipped) and the final text, once


async def test_a_restarted_step_replaces_what_was_shown() -> None:
    surface = RecordingSurface()
    await present(
        surface,
        *words("Let me check."),
        TextDelta("\n\nThe answer is fo"),
        TextReset("Let me check.\n\n"),
        TextDelta("The answer is 42."),
        TurnDone("Let me check.\n\nThe answer is 42."),
        pause_s=0.005,
    )
    assert surface.texts() == ["Let me check.\n\nThe answer is 42."]


async def test_tool_messages_keep_the_order_of_text_and_tools() -> None:
    surface = RecordingSurface(capabilities=replace(RecordingSurface().capabilities, rich_tools=True))
    call = ToolStarted("c1", "calculator", {"expression": "6*7"})
    await present(
        surface,
        TextDelta("Let me compute."),
        call,
        ToolFinished("c1", "calculator", "42", False, 0.1),
        TextDelta("\n\nIt is 42."),
        TurnDone("Let me compute.\n\nIt is 42."),
    )
    assert surface.texts() == ["Let me compute.", "[tool calculator done]", "It is 42."]


async def test_without_rich_tools_a_transient_tool_line_goes_away() -> None:
    surface = RecordingSurface()
    call = ToolStarted("c1", "calculator", {"expression": "6*7"})
    seen: list[str] = []

    async def events() -> AsyncIterator[AgentEvent]:
        yield TextDelta("Computing.")
        yield call
        await asyncio.sleep(0.05)
        seen.extend(surface.texts())
        yield ToolFinished("c1", "calculator", "42", False, 0.1)
        yield TurnDone("Computing.")

    await Presenter(surface, retry=FAST).present(events())
    assert any("calculator" in text for text in seen)
    assert surface.texts() == ["Computing."]


async def test_transient_notices_vanish_and_lasting_ones_stay() -> None:
    surface = RecordingSurface()
    await present(
        surface,
        Notice("retrying", "the model failed; retrying in 0.4s"),
        TextDelta("Done."),
        Notice("step_limit", "I stopped after 8 tool steps."),
        TurnDone("Done."),
        pause_s=0.03,
    )
    assert surface.texts() == ["Done.\n\n(info: I stopped after 8 tool steps.)"]


async def test_failure_keeps_the_partial_text_and_says_why() -> None:
    surface = RecordingSurface()
    await present(
        surface, TextDelta("Half an ans"), TurnFailed("provider_error", "the model failed", "Half an ans")
    )
    assert surface.texts() == ["Half an ans\n\n(failure: the model failed)"]


async def test_an_empty_answer_says_so() -> None:
    surface = RecordingSurface()
    await present(surface, TurnDone(""))
    assert surface.texts() == [f"(info: {EMPTY_ANSWER})"]


async def test_footer_goes_under_the_answer() -> None:
    surface = RecordingSurface()
    await present(surface, TextDelta("Hi."), TurnDone("Hi.", footer="10 in · 2 out tokens · $0.0001"))
    assert surface.texts() == ["Hi.\n\n(footer: 10 in · 2 out tokens · $0.0001)"]


async def test_refusals_and_private_command_replies_stay_private() -> None:
    surface = RecordingSurface()
    await Presenter(surface).present(scripted(Refused("not allowed here")), working=False)
    await Presenter(surface).present(scripted(CommandReply("model: x", private=True)), working=False)
    await Presenter(surface).present(scripted(CommandReply("public", private=False)), working=False)
    assert surface.private_replies == ["not allowed here", "model: x"]
    assert surface.texts() == ["public"]


async def test_typing_repeats_while_working_and_stops_when_refused_for_good() -> None:
    caps = replace(RecordingSurface().capabilities, typing_interval_s=0.01)
    surface = RecordingSurface(capabilities=caps)
    await present(surface, Notice("queued", "later"), TurnDone("ok"), pause_s=0.05)
    assert surface.calls.count("typing") >= 2
    refused = RecordingSurface(capabilities=caps)
    refused.fail = {"typing": [DeliveryError("403", transient=False)] * 10}
    await present(refused, Notice("queued", "later"), TurnDone("ok"), pause_s=0.05)
    assert refused.calls.count("typing") == 1


async def test_cosmetic_calls_hold_back_under_pressure() -> None:
    caps = replace(RecordingSurface().capabilities, typing_interval_s=0.01)
    surface = RecordingSurface(capabilities=caps)
    surface.fail = {"typing": throttled(1, retry_after=10.0)}
    await present(surface, Notice("queued", "later"), TurnDone("ok"), pause_s=0.05)
    assert surface.calls.count("typing") == 1  # one 429, then no more typing until it is over
    assert surface.texts() == ["ok"]  # the answer itself is not held back


class _Stream:
    """A native stream that shows text by id, closes after `close_after` characters."""

    def __init__(self, surface: RecordingSurface, close_after: int | None = None) -> None:
        self.surface, self.close_after = surface, close_after
        self.shown = ""
        self.finished: tuple[str, Sequence[Note]] | None = None

    async def show(self, text: str, status: str) -> None:
        if self.close_after is not None and len(text) > self.close_after:
            self.shown = text[: self.close_after]
            self.surface.messages["stream"] = self.shown
            raise StreamClosed(self.shown)
        self.shown = text
        self.surface.messages["stream"] = text

    async def tool_started(self, event: ToolStarted) -> bool:
        return True

    async def tool_finished(self, event: ToolFinished) -> bool:
        return True

    async def finish(self, text: str, notes: Sequence[Note], buttons: Buttons | None = None) -> None:
        await self.show(text, "")
        self.finished = (text, notes)

    @property
    def message_ids(self) -> list[str]:
        return ["stream"] if "stream" in self.surface.messages else []


async def test_native_stream_shows_the_answer_and_the_fallback_carries_on() -> None:
    caps = replace(RecordingSurface().capabilities, native_stream=True)
    whole = RecordingSurface(capabilities=caps)
    stream = _Stream(whole)
    whole.open_stream = lambda: _opened(stream)  # type: ignore[method-assign]
    await present(whole, *words("a b c d"), TurnDone("a b c d"), pause_s=0.005)
    assert whole.texts() == ["a b c d"] and stream.finished == ("a b c d", [])

    closing = RecordingSurface(capabilities=caps)
    short = _Stream(closing, close_after=4)
    closing.open_stream = lambda: _opened(short)  # type: ignore[method-assign]
    text = "abcd efgh ijkl"
    await present(closing, *words(text), TurnDone(text), pause_s=0.005)
    assert closing.messages["stream"] == "abcd"
    assert "".join(closing.texts()).replace(" ", "") == text.replace(" ", "")


async def _opened(stream: _Stream) -> _Stream:
    return stream


async def test_pressure_is_shared() -> None:
    pressure = Pressure()
    pressure.hit(0.05)
    assert not pressure.calm()
    await asyncio.sleep(0.06)
    assert pressure.calm()


async def test_an_answer_given_whole_is_posted_once() -> None:
    """A recovered answer arrives as TurnDone alone: one post, no second writer racing the first."""
    for caps in (
        RecordingSurface().capabilities,
        replace(RecordingSurface().capabilities, typing_interval_s=1.0),
    ):
        surface = RecordingSurface(capabilities=caps)
        await Presenter(surface, retry=FAST).present(scripted(TurnDone("stored answer")), working=False)
        assert surface.texts() == ["stored answer"] and surface.calls.count("post") == 1


class _ToolStream(_Stream):
    def __init__(self, surface: RecordingSurface) -> None:
        super().__init__(surface)
        self.tools: list[str] = []

    async def tool_started(self, event: ToolStarted) -> bool:
        self.tools.append(f"start {event.name}")
        return True

    async def tool_finished(self, event: ToolFinished) -> bool:
        self.tools.append(f"done {event.name}")
        return True


async def test_a_tool_call_before_any_text_goes_into_the_native_stream() -> None:
    caps = replace(RecordingSurface().capabilities, native_stream=True, rich_tools=True)
    surface = RecordingSurface(capabilities=caps)
    stream = _ToolStream(surface)
    surface.open_stream = lambda: _opened(stream)  # type: ignore[method-assign]
    await present(
        surface,
        ToolStarted("c1", "calculator", {}),
        ToolFinished("c1", "calculator", "42", False, 0.1),
        TextDelta("It is 42."),
        TurnDone("It is 42."),
    )
    assert stream.tools == ["start calculator", "done calculator"]
    assert surface.texts() == ["It is 42."] and "post_tool" not in surface.calls


async def test_every_message_the_answer_is_shown_in_is_reported_once() -> None:
    surface = RecordingSurface()
    shown: list[str] = []

    async def record(message_id: str) -> None:
        shown.append(message_id)

    text = " ".join(f"word{n}" for n in range(80))  # three parts at 200 characters
    presenter = Presenter(surface, retry=FAST, on_shown=record)
    await presenter.present(scripted(*words(text), TurnDone(text), pause_s=0.001))
    assert shown == list(surface.messages) and len(shown) == 3


async def test_an_answer_shown_again_after_a_crash_removes_what_the_dead_process_left() -> None:
    surface = RecordingSurface()
    left = await surface.post("The answer is fo")  # the killed process's half-written message
    surface.fail = {"delete": throttled(2)}  # removing it is retried, like the final text
    presenter = Presenter(surface, retry=FAST, stale=[left])
    outcome = await presenter.present(scripted(TurnDone("The answer is 42.")), working=False)
    assert outcome.delivered and await presenter.remove_stale() == 1
    assert surface.texts() == ["The answer is 42."]


async def test_stale_messages_stay_until_the_new_answer_has_landed() -> None:
    surface = RecordingSurface()
    left = await surface.post("The answer is fo")
    surface.fail = {"post": [DeliveryError("403", transient=False)]}
    presenter = Presenter(surface, retry=FAST, stale=[left])
    outcome = await presenter.present(scripted(TurnDone("The answer is 42.")), working=False)
    assert not outcome.delivered and await presenter.remove_stale() == 0
    assert surface.texts() == ["The answer is fo"]  # better half an answer than none


async def test_while_the_adapters_limiter_is_backlogged_only_the_final_text_goes_out() -> None:
    surface = RecordingSurface(backlog=True)  # e.g. a Telegram group's 20-a-minute budget is spent
    text = "one two three four five six seven eight nine ten"
    outcome = await present(surface, *words(text), TurnDone(text), pause_s=0.003)
    assert outcome.delivered and surface.texts() == [text]
    assert surface.calls == ["post"]  # no placeholder, no interim post or edit queued before it


async def test_the_final_text_waits_for_the_answer_before_it_in_the_conversation() -> None:
    surface = RecordingSurface(capabilities=replace(RecordingSurface().capabilities, can_edit=False))
    earlier: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    presenter = Presenter(surface, retry=FAST, after=earlier)
    task = asyncio.create_task(presenter.present(scripted(TurnDone("the second answer"))))
    await asyncio.sleep(0.05)
    assert surface.texts() == [] and not task.done()  # the first answer is still being retried
    await surface.post("the first answer")
    earlier.set_result(None)
    assert (await task).delivered
    assert surface.texts() == ["the first answer", "the second answer"]
