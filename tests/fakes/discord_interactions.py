"""The fake Discord's interaction routes: the callback that acknowledges an interaction within 3 s,
and the webhook routes (`@original`, followups) its token opens for 15 minutes.

Callback types follow the interaction's type, as Discord checks them: an application command (2)
takes 4 CHANNEL_MESSAGE_WITH_SOURCE or 5 DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE; autocomplete (4) takes
8; a message component (3) also takes 6 DEFERRED_UPDATE_MESSAGE (nothing new is shown; `@original` is
then the message the button is on) and 7 UPDATE_MESSAGE (that message edited at once).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tests.fakes import discord_components as components
from tests.fakes import discord_wire as wire
from tests.fakes.discord_wire import ApiError

INTERACTION_DEADLINE_S = 3.0
APP_COMMAND, COMPONENT, AUTOCOMPLETE = 2, 3, 4
CALLBACK_TYPES: dict[int, tuple[int, ...]] = {
    APP_COMMAND: (4, 5),
    COMPONENT: (4, 5, 6, 7),
    AUTOCOMPLETE: (8,),
}


@dataclass
class Interaction:
    id: int
    token: str
    channel_id: int
    guild_id: int | None
    user_id: int
    dispatched_at: float
    state: str = "new"  # new -> deferred | responded
    original_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)
    first_content_at: float | None = None
    kind: int = APP_COMMAND  # the interaction type
    message_id: int | None = None  # a component's: the message the pressed button is on


class InteractionRoutes:
    """The interaction half of the fake's REST API (FakeRestApi holds the state declared here)."""

    messages: dict[int, dict[str, Any]]
    interactions: dict[int, Interaction]
    by_token: dict[str, Interaction]
    tokens_expired: bool
    on_content: Callable[[Interaction], None] | None

    # The message store (FakeRestApi): create (channel id, content, embeds, flags, **details), edit.
    _create_message: Callable[..., Awaitable[dict[str, Any]]]
    _edit: Callable[[dict[str, Any], dict[str, Any]], Awaitable[dict[str, Any]]]

    def _interaction(self, token: str) -> Interaction:
        interaction = self.by_token.get(token)
        if interaction is None:
            raise wire.unknown("Webhook", 10015)
        if self.tokens_expired:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        return interaction

    async def _callback(self, body: Any, interaction_id: str, token: str) -> dict[str, Any]:
        interaction = self.interactions.get(int(interaction_id))
        if interaction is None or interaction.token != token:
            raise ApiError(404, 10062, "Unknown interaction")
        if time.perf_counter() - interaction.dispatched_at > INTERACTION_DEADLINE_S:
            raise ApiError(404, 10062, "Unknown interaction")
        if interaction.state != "new":
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        kind = body.get("type") if isinstance(body, dict) else None
        data = (body or {}).get("data") or {}
        allowed = CALLBACK_TYPES.get(interaction.kind, ())
        if kind not in allowed:
            raise wire.form_error("type", "BASE_TYPE_CHOICES", f"Value must be one of {allowed}; got {kind}.")
        if kind == 8:
            _check_choices(data.get("choices"))
            interaction.state = "responded"
            return {"interaction": {"id": interaction_id, "type": interaction.kind}}
        if kind in (6, 7):
            return await self._update_message(interaction, kind, data)
        flags = int(data.get("flags") or 0)
        if kind == 4:
            wire.check_message_body(data, editing=False)
            components.check(data)
            content, embeds = data.get("content") or "", data.get("embeds") or []
        else:
            content, embeds, flags = "", [], flags | wire.FLAG_LOADING
        message = await self._create_message(
            interaction.channel_id,
            content,
            embeds,
            flags,
            message_type=20 if interaction.kind == APP_COMMAND else 0,
            interaction=interaction,
            components=data.get("components") if kind == 4 else None,
        )
        interaction.state = "deferred" if kind == 5 else "responded"
        interaction.original_id = int(message["id"])
        self._note_content(interaction, content)
        return {
            "interaction": {
                "id": interaction_id,
                "type": interaction.kind,
                "response_message_id": message["id"],
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(flags & wire.FLAG_EPHEMERAL),
            },
            "resource": {"type": kind} | ({"message": message} if kind == 4 else {}),
        }

    async def _update_message(
        self, interaction: Interaction, kind: int, data: dict[str, Any]
    ) -> dict[str, Any]:
        """6: acknowledged, nothing shown; 7: the button's message edited with `data` right away."""
        message = self.messages.get(interaction.message_id or 0)
        if message is None:
            raise wire.unknown("Message", 10008)
        if kind == 7:
            wire.check_message_body(data, editing=True)
            components.check(data)
            message = await self._edit(message, data)
        interaction.state = "responded" if kind == 7 else "deferred"
        interaction.original_id = int(message["id"])
        return {
            "interaction": {
                "id": str(interaction.id),
                "type": interaction.kind,
                "response_message_id": message["id"],
                "response_message_loading": False,
                "response_message_ephemeral": bool(message["flags"] & wire.FLAG_EPHEMERAL),
            },
            "resource": {"type": kind} | ({"message": message} if kind == 7 else {}),
        }

    def _webhook_message(self, interaction: Interaction, message_id: str) -> dict[str, Any]:
        wanted = interaction.original_id if message_id == "@original" else int(message_id)
        if wanted is None or wanted not in self.messages:
            raise wire.unknown("Message", 10008)
        if wanted != interaction.original_id and wanted not in interaction.followup_ids:
            raise wire.unknown("Message", 10008)
        return self.messages[wanted]

    async def _webhook_edit(self, body: Any, app_id: str, token: str, message_id: str) -> dict[str, Any]:
        interaction = self._interaction(token)
        message = self._webhook_message(interaction, message_id)
        wire.check_message_body(body, editing=True)
        components.check(body)
        updated = await self._edit(message, body)
        self._note_content(interaction, updated["content"])
        return updated

    async def _webhook_delete(self, _body: Any, app_id: str, token: str, message_id: str) -> None:
        interaction = self._interaction(token)
        message = self._webhook_message(interaction, message_id)
        del self.messages[int(message["id"])]

    async def _webhook_send(self, body: Any, app_id: str, token: str) -> dict[str, Any]:
        interaction = self._interaction(token)
        if interaction.state == "new":
            raise wire.unknown("Webhook", 10015)
        wire.check_message_body(body, editing=False)
        components.check(body)
        message = await self._create_message(
            interaction.channel_id,
            body.get("content") or "",
            body.get("embeds") or [],
            int(body.get("flags") or 0),
            interaction=interaction,
            components=body.get("components"),
        )
        interaction.followup_ids.append(int(message["id"]))
        self._note_content(interaction, message["content"])
        return message

    def _note_content(self, interaction: Interaction, content: str) -> None:
        if content and interaction.first_content_at is None:
            interaction.first_content_at = time.perf_counter()
            if self.on_content is not None:
                self.on_content(interaction)


def _check_choices(choices: Any) -> None:
    if not isinstance(choices, list) or len(choices) > 25:
        raise wire.form_error("data.choices", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    for number, choice in enumerate(choices):
        if not 1 <= len(choice.get("name", "")) <= 100 or len(str(choice.get("value", ""))) > 100:
            raise wire.form_error(
                f"data.choices.{number}", "BASE_TYPE_BAD_LENGTH", "Must be 1-100 in length."
            )
