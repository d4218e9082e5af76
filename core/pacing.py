"""How often a streaming answer is updated when many stream at once.

Each interim update is a platform call (~1 ms of the bot's CPU, and a share of the platform's rate
limit). With a fixed cadence the cost grows with the number of answers streaming, until the event loop
is busy with interim updates and first texts and finals wait behind them. So the process has a budget
of interim updates per second, shared by every answer streaming in it: with few answers each gets the
surface's own cadence, with many each is updated less often (100 at 100/s: once a second). First texts
and finals are not interim updates and never wait for the budget.
"""

from __future__ import annotations

# ~1 ms of CPU each: a tenth of one core at most, wherever the answers' own cadence asks for more.
DEFAULT_INTERIM_UPDATES_PER_S = 100.0


class InterimBudget:
    def __init__(self, per_second: float) -> None:
        if per_second <= 0:
            raise ValueError("the interim update budget must be positive")
        self.per_second = per_second
        self.streaming = 0  # answers between their first text and their final one

    def interval(self, floor_s: float) -> float:
        """The least time between two interim updates of one answer: the surface's `floor_s`, or longer
        when the answers streaming now would spend more than the budget."""
        return max(floor_s, self.streaming / self.per_second)


class BudgetShare:
    """One answer's place in the budget: counted from its first shown text until it ends."""

    __slots__ = ("_budget", "_joined")

    def __init__(self, budget: InterimBudget | None) -> None:
        self._budget = budget
        self._joined = False

    def join(self) -> None:
        if self._budget is not None and not self._joined:
            self._joined = True
            self._budget.streaming += 1

    def leave(self) -> None:
        if self._budget is not None and self._joined:
            self._joined = False
            self._budget.streaming -= 1

    def interval(self, floor_s: float) -> float:
        return floor_s if self._budget is None else self._budget.interval(floor_s)
