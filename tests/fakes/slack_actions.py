"""Button presses for the fake Slack: `block_actions` payloads as Slack sends them, over Socket Mode (an
`interactive` envelope) or the Events API URL (a signed form body `payload=<json>`).

A press is built from the message as the fake stores it: the button must be in its blocks (an `actions`
block's `button`, or one half of a `feedback_buttons` element), so a test fails when the bot did not
really render the button it expects to be pressed. The payload carries what Slack's does: `user`,
`team`, `channel`, `container` (with `thread_ts` for a message in a thread), the whole `message`
(blocks included), `actions[0]` with `action_id`, `block_id`, `text`, `value`, `type` and `action_ts`,
a fresh `trigger_id`, `response_url`, `api_app_id` and an empty `state`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, Protocol
from urllib.parse import urlencode

import aiohttp

# The fake workspace's ids (tests import them from tests.fakes.slack_server).
TEAM = "T0FAKE"
APP_ID = "A0APP"
BOT_ID = "B0BOT"
BOT_USER = "U0BOT"


class StoredMessage(Protocol):
    channel: str
    ts: str
    text: str
    thread_ts: str | None
    blocks: list[Any] | None


def _elements(blocks: list[Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(block_id, element) for every interactive element; Slack makes up block ids left out."""
    for index, block in enumerate(blocks):
        if block.get("type") in ("actions", "context_actions"):
            for element in block.get("elements") or []:
                yield str(block.get("block_id") or f"blk{index}"), element


def find_action(blocks: list[Any] | None, value: str) -> dict[str, Any]:
    """The `actions[0]` of a press on the button whose value is `value`, as Slack reports it."""
    for block_id, element in _elements(blocks or []):
        kind = element.get("type")
        if kind == "feedback_buttons":
            for half in (element["positive_button"], element["negative_button"]):
                if half.get("value") == value:
                    return {
                        "type": "feedback_buttons",
                        "action_id": element.get("action_id") or "feedback",
                        "block_id": block_id,
                        "text": half["text"],
                        "value": value,
                    }
        elif element.get("value") == value:
            action = {
                "type": kind,
                "action_id": element.get("action_id") or "button",
                "block_id": block_id,
                "text": element["text"],
                "value": value,
            }
            if "style" in element:
                action["style"] = element["style"]
            return action
    raise AssertionError(f"no button with value {value!r} in {blocks!r}")


def buttons_of(message: StoredMessage) -> list[str]:
    """The values of every button a message shows, in order (feedback buttons too)."""
    values: list[str] = []
    for _, element in _elements(message.blocks or []):
        if element.get("type") == "feedback_buttons":
            values += [element["positive_button"]["value"], element["negative_button"]["value"]]
        elif "value" in element:
            values.append(str(element["value"]))
    return values


def block_actions(
    message: StoredMessage, value: str, *, user: str, user_name: str, port: int, action_ts: str
) -> dict[str, Any]:
    """The payload of `user` pressing the button with `value` on `message`."""
    action = find_action(message.blocks, value) | {"action_ts": action_ts}
    history: dict[str, Any] = {
        "type": "message",
        "user": BOT_USER,
        "bot_id": BOT_ID,
        "app_id": APP_ID,
        "team": TEAM,
        "text": message.text,
        "ts": message.ts,
        "blocks": message.blocks or [],
    }
    container: dict[str, Any] = {
        "type": "message",
        "message_ts": message.ts,
        "channel_id": message.channel,
        "is_ephemeral": False,
    }
    if message.thread_ts:
        history |= {"thread_ts": message.thread_ts, "parent_user_id": "U0ALICE"}
        container["thread_ts"] = message.thread_ts
    token = uuid.uuid4().hex[:12]
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user_name, "name": user_name, "team_id": TEAM},
        "api_app_id": APP_ID,
        "token": "legacy-verification-token",
        "container": container,
        "trigger_id": f"{action_ts}.{token}",
        "team": {"id": TEAM, "domain": "fake"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {
            "id": message.channel,
            "name": "directmessage" if message.channel.startswith("D") else "general",
        },
        "message": history,
        "state": {"values": {}},
        "response_url": f"http://127.0.0.1:{port}/respond/{token}",
        "actions": [action],
    }


def form_body(payload: Mapping[str, Any]) -> str:
    """How the Events API URL receives an interaction: `application/x-www-form-urlencoded`, one field."""
    return urlencode({"payload": json.dumps(payload)})


async def post_form(
    http: aiohttp.ClientSession, url: str, body: str, headers: Mapping[str, str]
) -> tuple[int, str]:
    headers = {"Content-Type": "application/x-www-form-urlencoded", **headers}
    async with http.post(url, data=body, headers=headers) as response:
        return response.status, await response.text()
