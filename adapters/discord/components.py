"""The core's `Buttons` as Discord message components: one action row of buttons.

Each `Button.action` becomes the button's `custom_id`, which is all a press brings back; presses are
handled by that id (clicks.py), never by an in-memory view object, so buttons keep working after a
restart and on another replica. The discord.ui view here only renders: it reports itself finished, so
discord.py never stores it in its view store (which would also hold it in memory for good).
"""

from __future__ import annotations

from typing import Any

import discord
from discord.utils import MISSING

from core.actions import Buttons, ButtonStyle

MAX_CUSTOM_ID = 100  # Discord's limit on a component's custom_id
MAX_LABEL = 80  # a button label
MAX_PER_ROW = 5  # buttons in one action row

_STYLES: dict[ButtonStyle, discord.ButtonStyle] = {
    "primary": discord.ButtonStyle.primary,  # 1, blurple
    "danger": discord.ButtonStyle.danger,  # 4, red
    "default": discord.ButtonStyle.secondary,  # 2, grey
}


class ButtonRow(discord.ui.View):
    """A row of buttons to render into a message; never listens for presses itself."""

    def __init__(self, buttons: Buttons) -> None:
        super().__init__(timeout=None)
        for button in buttons.row[:MAX_PER_ROW]:
            self.add_item(
                discord.ui.Button(
                    style=_STYLES.get(button.style, discord.ButtonStyle.secondary),
                    label=_label(button.label),
                    custom_id=button.action[:MAX_CUSTOM_ID],
                    row=0,
                )
            )

    def is_finished(self) -> bool:
        # discord.py stores unfinished views with buttons to dispatch presses to their callbacks; ours
        # are handled by custom_id, so none is ever stored.
        return True


def _label(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


def row_of(buttons: Buttons | None) -> ButtonRow | None:
    """The view for an edit: None removes the buttons a message had (`components: []`)."""
    return None if buttons is None or not buttons.row else ButtonRow(buttons)


def sendable(view: ButtonRow | None) -> Any:
    """`view` for a new message: MISSING (no components) rather than None, which webhook sends refuse."""
    return MISSING if view is None else view
