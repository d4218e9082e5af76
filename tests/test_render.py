"""The splitter, and post + paced edits through the presenter on an in-memory surface."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest

from core.actions import Buttons
from core.events import AgentEvent, TextDelta, TurnDone
from core.present import Presenter
from core.surface import Capabilities
from core.textsplit import split_text
from tests.corekit import RecordingSurface


def test_short_text_is_one_part() -> None:
    assert split_text("hello", 100) == ["hello"]
    assert split_text("", 100) == [""]


def test_split_prefers_paragraphs_and_keeps_all_text() -> None:
    text = ("word " * 30 + "\n\n") * 10
    parts = split_text(text, 400)
    assert all(len(p) <= 400 for p in parts)
    assert "".join(parts) == text
    assert all(p.endswith("\n\n") for p in parts[:-1])


def test_split_without_boundaries_cuts_hard() -> None:
    parts = split_text("x" * 1000, 300)
    assert [len(p) for p in parts] == [296, 296, 296, 112]
    assert "".join(parts) == "x" * 1000


def test_split_closes_and_reopens_code_fences() -> None:
    code = "\n".join(f"line_{i} = {i}" for i in range(200))
    text = "Here:\n\n```python\n" + code + "\n```\nDone."
    parts = split_text(text, 500)
    assert all(len(p) <= 500 for p in parts)
    for part in parts:
        assert part.count("```") % 2 == 0, part  # every part renders as balanced Markdown
    assert parts[1].startswith("```python\n")
    body = "".join(p.replace("```python\n", "").replace("\n```", "") for p in parts)
    assert all(f"line_{i} = {i}" in body for i in range(200))


def test_split_rejects_tiny_limit() -> None:
    with pytest.raises(ValueError):
        split_text("abc", 10)


async def _stream(surface: RecordingSurface, pieces: list[str], pause_s: float = 0.001) -> None:
    async def events() -> AsyncIterator[AgentEvent]:
        for piece in pieces:
            yield TextDelta(piece)
            await asyncio.sleep(pause_s)
        yield TurnDone("".join(pieces))

    await Presenter(surface).present(events())


class TimedSurface(RecordingSurface):
    """Records when each edit happened."""

    def __init__(self, capabilities: Capabilities) -> None:
        super().__init__(capabilities=capabilities)
        self.edit_times: list[float] = []

    async def edit(self, message_id: str, text: str, buttons: Buttons | None = None) -> None:
        self.edit_times.append(asyncio.get_running_loop().time())
        await super().edit(message_id, text, buttons)


async def test_edits_are_paced_by_time_and_end_exact() -> None:
    surface = TimedSurface(Capabilities(max_message_chars=2000, edit_interval_s=0.05, typing_interval_s=1))
    words = [f"w{i} " for i in range(200)]
    await _stream(surface, words)
    assert surface.texts() == ["".join(words)]
    gaps = [b - a for a, b in itertools.pairwise(surface.edit_times)]
    assert all(gap >= 0.045 for gap in gaps), gaps  # never faster than the cadence
    assert len(surface.edit_times) < 20  # ~0.3 s of streaming at 50 ms -> a handful, not one per word


async def test_long_answers_continue_in_new_messages() -> None:
    surface = RecordingSurface(capabilities=Capabilities(max_message_chars=100, edit_interval_s=0.01))
    text = "".join(f"sentence number {i}. " for i in range(40))
    await _stream(surface, [text])
    shown = surface.texts()
    assert len(shown) > 1 and all(len(s) <= 100 for s in shown)
    assert "".join(shown) == text


async def test_without_edits_the_answer_is_posted_once_at_the_end() -> None:
    caps = Capabilities(max_message_chars=100, edit_interval_s=0.01, can_edit=False)
    surface = RecordingSurface(capabilities=caps)
    await _stream(surface, ["all ", "at ", "once"])
    assert surface.calls == ["post"]
    assert surface.texts() == ["all at once"]
