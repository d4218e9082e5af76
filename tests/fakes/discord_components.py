"""Message components in the fake Discord: validation as the real API does it, storage with the ids
Discord assigns, and the MESSAGE_COMPONENT interaction a press of a button dispatches.

Rules (Discord API v10, "Component Reference", without the IS_COMPONENTS_V2 flag): at most 5 top-level
components, each an ACTION_ROW (type 1) of at most 5 BUTTONs (type 2); a button has a label (at most
80 characters) or an emoji, a style 1-6; styles 1-4 need a custom_id of 1-100 characters, unique in the
message; LINK (5) needs a url and no custom_id; PREMIUM (6) a sku_id. Discord answers a breach with 400
Invalid Form Body (50035) and the path of the offending field.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.fakes.discord_wire import ApiError, form_error

MAX_ROWS = 5
MAX_PER_ROW = 5
MAX_CUSTOM_ID = 100
MAX_LABEL = 80
ACTION_ROW, BUTTON = 1, 2
LINK, PREMIUM = 5, 6


def check(body: dict[str, Any]) -> None:
    """Validate `components` of a create or edit body (absent: nothing to check)."""
    if "components" not in body or body["components"] is None:
        return
    rows = body["components"]
    if not isinstance(rows, list):
        raise form_error("components", "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
    if len(rows) > MAX_ROWS:
        raise form_error("components", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_ROWS} or fewer in length.")
    seen: set[str] = set()
    for r, row in enumerate(rows):
        where = f"components.{r}"
        if not isinstance(row, dict) or row.get("type") != ACTION_ROW:
            raise form_error(f"{where}.type", "UNION_TYPE_CHOICES", 'Value of field "type" must be 1.')
        buttons = row.get("components")
        if not isinstance(buttons, list) or not buttons:
            raise form_error(f"{where}.components", "BASE_TYPE_REQUIRED", "This field is required")
        if len(buttons) > MAX_PER_ROW:
            raise form_error(
                f"{where}.components", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_PER_ROW} or fewer in length."
            )
        for b, button in enumerate(buttons):
            _check_button(f"{where}.components.{b}", button, seen)


def _check_button(where: str, button: Any, seen: set[str]) -> None:
    if not isinstance(button, dict) or button.get("type") != BUTTON:
        raise form_error(f"{where}.type", "UNION_TYPE_CHOICES", "Only buttons are expected here.")
    style = button.get("style")
    if style not in range(1, 7):
        raise form_error(f"{where}.style", "BASE_TYPE_CHOICES", "Value must be one of (1, 2, 3, 4, 5, 6).")
    label = button.get("label")
    if label is not None and (not isinstance(label, str) or len(label) > MAX_LABEL):
        raise form_error(f"{where}.label", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_LABEL} or fewer in length.")
    if style != PREMIUM and not label and not button.get("emoji"):
        raise form_error(where, "BUTTON_COMPONENT_INVALID", "A label or an emoji is required.")
    custom_id = button.get("custom_id")
    if style == LINK:
        if not button.get("url") or custom_id is not None:
            raise form_error(where, "BUTTON_COMPONENT_URL_REQUIRED", "A url is required (and no custom_id).")
        return
    if style == PREMIUM:
        if not button.get("sku_id"):
            raise form_error(f"{where}.sku_id", "BASE_TYPE_REQUIRED", "This field is required")
        return
    if not isinstance(custom_id, str) or not 1 <= len(custom_id) <= MAX_CUSTOM_ID:
        raise form_error(
            f"{where}.custom_id", "BASE_TYPE_BAD_LENGTH", f"Must be between 1 and {MAX_CUSTOM_ID} in length."
        )
    if custom_id in seen:
        raise form_error(
            f"{where}.custom_id", "COMPONENT_CUSTOM_ID_DUPLICATED", "Component custom id cannot be duplicated"
        )
    seen.add(custom_id)


def stored(rows: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The components as Discord keeps and returns them: every component numbered (`id`), 1, 2, ... in
    order, unless the app chose the numbers."""
    result = copy.deepcopy(rows or [])
    number = 0
    for row in result:
        number += 1
        row.setdefault("id", number)
        for button in row["components"]:
            number += 1
            button.setdefault("id", number)
    return result


def buttons_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The buttons a stored message shows, in order (its rows flattened)."""
    return [b for row in message.get("components") or [] for b in row.get("components") or []]


def find_button(message: dict[str, Any], which: str) -> dict[str, Any]:
    """The button of `message` whose label or custom_id is `which`."""
    for button in buttons_of(message):
        if which in (button.get("label"), button.get("custom_id")):
            return button
    shown = [(b.get("label"), b.get("custom_id")) for b in buttons_of(message)]
    raise AssertionError(f"no button {which!r} on message {message['id']}; it shows {shown}")


def press_data(button: dict[str, Any]) -> dict[str, Any]:
    """`data` of the MESSAGE_COMPONENT interaction a press of `button` sends."""
    if button.get("style") in (LINK, PREMIUM):
        raise ApiError(400, 0, "link and premium buttons send no interaction")
    return {"custom_id": button["custom_id"], "component_type": BUTTON, "id": button["id"]}
