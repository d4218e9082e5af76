"""The interim-update budget (core/pacing.py): answers streaming at once share it, so each is updated
less often as more stream; first texts and finals never wait for it, and every answer leaves it."""

from __future__ import annotations

import asyncio

import pytest

from core.events import TurnDone
from core.pacing import BudgetShare, InterimBudget
from core.present import Presenter
from tests.corekit import RecordingSurface
from tests.test_present import FAST, scripted, words


def test_the_interval_is_the_surface_cadence_until_the_streams_spend_the_budget() -> None:
    budget = InterimBudget(100.0)
    shares = [BudgetShare(budget) for _ in range(300)]
    for share in shares[:10]:
        share.join()
    assert budget.interval(0.5) == 0.5  # 10 answers at 2 a second: within the budget
    for share in shares:
        share.join()
        share.join()  # joining twice counts once
    assert budget.streaming == 300 and budget.interval(0.5) == pytest.approx(3.0)
    for share in shares:
        share.leave()
        share.leave()
    assert budget.streaming == 0
    assert BudgetShare(None).interval(0.7) == 0.7  # no budget: the surface's own cadence
    with pytest.raises(ValueError):
        InterimBudget(0)


async def test_answers_streaming_at_once_are_counted_and_updated_less_often() -> None:
    text = "one two three four five six seven eight nine ten"
    budget = InterimBudget(10.0)  # 10 answers at once: each at most one interim update a second
    surfaces = [RecordingSurface() for _ in range(10)]
    presenters = [Presenter(surface, retry=FAST, budget=budget) for surface in surfaces]
    seen: list[int] = []

    async def watch() -> None:
        while True:
            seen.append(budget.streaming)
            await asyncio.sleep(0.02)

    watching = asyncio.create_task(watch())
    outcomes = await asyncio.gather(
        *(p.present(scripted(*words(text), TurnDone(text), pause_s=0.03)) for p in presenters)
    )
    watching.cancel()
    assert all(o.delivered and o.final_text == text for o in outcomes)
    assert max(seen) == 10 and budget.streaming == 0
    # ~0.6 s of streaming each: the first text, at most one more interim update, the final text.
    assert all(surface.calls.count("edit") <= 2 for surface in surfaces)
    alone = RecordingSurface()  # the same answer with nobody else streaming: the surface's 0.01 s
    await Presenter(alone, retry=FAST, budget=InterimBudget(10.0)).present(
        scripted(*words(text), TurnDone(text), pause_s=0.03)
    )
    assert alone.calls.count("edit") > 5
