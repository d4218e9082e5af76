"""Test helpers of the fake Discord that dispatch interactions: slash commands (and autocomplete),
button presses, and a duplicate delivery. INTERACTION_CREATE payloads are built as Discord sends
them: the shared envelope, the member (guild) or user (DM) who acted, and for a component the
message it is on, buttons included."""

from __future__ import annotations

import copy
import secrets
import time
from collections.abc import Callable
from typing import Any

from tests.fakes import discord_components as components
from tests.fakes import discord_wire as wire
from tests.fakes.discord_interactions import COMPONENT, Interaction
from tests.fakes.discord_wire import snowflake


class InteractionEvents:
    """Mixed into FakeDiscord, which holds the state declared here."""

    application_id: int
    alice: int
    users: dict[int, dict[str, Any]]
    roles: dict[int, list[int]]
    channels: dict[int, dict[str, Any]]
    channel_id: int  # the default channel
    messages: dict[int, dict[str, Any]]
    interactions: dict[int, Interaction]
    by_token: dict[str, Interaction]
    commands: dict[int | None, list[dict[str, Any]]]
    sessions: dict[str, Any]

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        raise NotImplementedError

    def _command(self, name: str, guild_id: int | None) -> dict[str, Any]:
        for scope in (guild_id, None):
            for command in self.commands.get(scope, []):
                if command["name"] == name:
                    return command
        raise AssertionError(f"/{name} is not registered (guild {guild_id}); registered: {self.commands}")

    def _author(self, user_id: int, guild_id: int | None) -> dict[str, Any]:
        if guild_id is None:
            return {"user": self.users[user_id]}
        return {"member": wire.member(self.users[user_id], self.roles[user_id])}

    async def slash(
        self,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        user: int | None = None,
        channel: int | None = None,
        interaction_type: int = 2,
        focused: str | None = None,
        registered: bool = True,
    ) -> Interaction:
        """Dispatch INTERACTION_CREATE for a registered slash command (type 2) or autocomplete (4).
        Option types follow the values (str: STRING, bool: BOOLEAN, int: INTEGER, float: NUMBER), as a
        client with an outdated command list may send them. `registered=False`: a command Discord
        still shows but the bot does not have (an older sync)."""
        user_id = user or self.alice
        channel_payload = self.channels[channel or self.channel_id]
        guild_id = int(channel_payload["guild_id"]) if "guild_id" in channel_payload else None
        command = self._command(name, guild_id) if registered else {"id": str(snowflake())}
        data: dict[str, Any] = {"id": command["id"], "name": name, "type": 1}
        if command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        if options:
            data["options"] = [
                {"name": k, "type": wire.option_type(v), "value": v}
                | ({"focused": True} if k == focused else {})
                for k, v in options.items()
            ]
        interaction = Interaction(
            snowflake(),
            secrets.token_urlsafe(48),
            int(channel_payload["id"]),
            guild_id,
            user_id,
            0.0,
            kind=interaction_type,
        )
        await self._dispatch_interaction(interaction, channel_payload, data)
        return interaction

    async def press(
        self,
        message_id: int | str,
        which: str,
        *,
        user: int | None = None,
        tamper: Callable[[dict[str, Any]], None] | None = None,
    ) -> Interaction:
        """`user` (alice by default) presses the button labelled (or with custom_id) `which` on a message
        the fake holds: INTERACTION_CREATE of type 3 MESSAGE_COMPONENT, with the message as it is now.
        `tamper` changes the payload before it is sent (a malformed press)."""
        message = self.messages[int(message_id)]
        button = components.find_button(message, which)
        channel_payload = self.channels[int(message["channel_id"])]
        guild_id = int(channel_payload["guild_id"]) if "guild_id" in channel_payload else None
        interaction = Interaction(
            snowflake(),
            secrets.token_urlsafe(48),
            int(channel_payload["id"]),
            guild_id,
            user or self.alice,
            0.0,
            kind=COMPONENT,
            message_id=int(message["id"]),
        )
        data = components.press_data(button)
        await self._dispatch_interaction(interaction, channel_payload, data, message=message, tamper=tamper)
        return interaction

    def buttons_on(self, message_id: int | str) -> list[tuple[str, str, int]]:
        """(label, custom_id, style) of each button a message shows now (none: no such message yet)."""
        message = self.messages.get(int(message_id), {})
        return [
            (b.get("label", ""), b.get("custom_id", ""), b["style"]) for b in components.buttons_of(message)
        ]

    async def _dispatch_interaction(
        self,
        interaction: Interaction,
        channel_payload: dict[str, Any],
        data: dict[str, Any],
        *,
        message: dict[str, Any] | None = None,
        tamper: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """INTERACTION_CREATE as Discord sends it: the envelope every interaction type shares, the
        member (guild) or user (DM) who acted, and for a component the message it is on."""
        guild_id, user_id = interaction.guild_id, interaction.user_id
        payload: dict[str, Any] = {
            "id": str(interaction.id),
            "application_id": str(self.application_id),
            "type": interaction.kind,
            "data": data,
            "channel_id": channel_payload["id"],
            "channel": channel_payload,
            "token": interaction.token,
            "version": 1,
            "app_permissions": "2248473465835073",
            "locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(guild_id)} if guild_id else {"1": str(user_id)},
            "context": 0 if guild_id else 1,
            "attachment_size_limit": 10485760,
        } | self._author(user_id, guild_id)
        if guild_id:
            payload["guild_id"] = str(guild_id)
            payload["guild_locale"] = "en-US"
            payload["guild"] = {"id": str(guild_id), "locale": "en-US", "features": []}
        if message is not None:
            payload["message"] = copy.deepcopy(message)
        if tamper is not None:
            tamper(payload)
        self.interactions[interaction.id] = interaction
        self.by_token[interaction.token] = interaction
        interaction.dispatched_at = time.perf_counter()
        await self.dispatch("INTERACTION_CREATE", payload)

    async def redispatch(self, interaction: Interaction) -> None:
        """Send the last INTERACTION_CREATE for this interaction again (a duplicate delivery)."""
        for session in self.sessions.values():  # also an earlier session (a restarted bot)
            for event in session.events:
                if event.get("t") == "INTERACTION_CREATE" and event["d"]["id"] == str(interaction.id):
                    await self.dispatch("INTERACTION_CREATE", event["d"])
                    return
        raise AssertionError("interaction was never dispatched")
