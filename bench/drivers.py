"""One driver per platform for bench/delivery.py: its fake server in this process, how a user's message
reaches the bot, what the bot's messages show, and the fake's knobs (hold a final call, a 429 storm).

- Slack: HTTP Events API mode (signed POSTs to the bot's /slack/events; the bot answers 200 once the
  turn is stored). A delivery that fails (the bot is down) is retried after the restart, with
  X-Slack-Retry-Num, as Slack retries. A conversation is a thread: a mention, then replies in it.
- Discord: `/ask` in a channel of its own per conversation (the answer edits the interaction's
  response); with `one_channel`, @mentions in one channel, each opening its own thread.
- Telegram: long polling (see TelegramDriver).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import aiohttp

from adapters.slack.client import NO_RETRY_METHODS
from bench.harness import LAST_WORD, Shown, Turn, question_id
from core.inbound import ConversationRef
from tests.fakes import discord_wire
from tests.fakes.discord_server import BOT_TOKEN as DISCORD_TOKEN
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.slack_actions import BOT_USER, TEAM
from tests.fakes.slack_server import BOT_TOKEN, SIGNING_SECRET, FakeSlack, mention


class Driver(Protocol):
    name: str

    async def start(self, conversations: int, *, one_channel: bool) -> None: ...

    async def stop(self) -> None: ...

    def env(self) -> dict[str, str]:
        """The platform's settings for the bot process."""
        ...

    async def connected(self) -> None:
        """After the bot's /readyz: wait until the fake has seen the bot (re)connect."""
        ...

    def conversation(self, turn: Turn) -> None:
        """Give a conversation's first turn its place (`key`, `ref`)."""
        ...

    def follow_up(self, turn: Turn, first: Turn) -> None:
        """`turn` continues the conversation `first` started (sent once the previous one is answered)."""
        ...

    async def send(self, turn: Turn) -> None:
        """The user sends `turn`; returns once the platform has handed it to the bot (Slack: the POST
        was answered 200; Discord: the gateway dispatched it; Telegram: queued for getUpdates)."""
        ...

    def delivered(self, turns: Sequence[Turn]) -> bool:
        """True once the platform has handed all of `turns` to the bot."""
        ...

    async def after_restart(self) -> None:
        """What the platform does once the bot is back (Slack retries deliveries that failed)."""
        ...

    def texts(self) -> dict[str, list[Shown]]:
        """Every bot message's visible text and a marker for each question asked, by conversation
        key, in the platform's order."""
        ...

    def hold_finals(self, on: bool) -> None:
        """Make calls that would show a whole reply (its last word) hang without effect."""
        ...

    def held(self) -> int: ...

    def release(self) -> None: ...

    def storm(self, seconds: float, retry_after: float) -> None:
        """429 to every reply call (post, edit, stream, typing, status) for `seconds`."""
        ...

    def rate_limited(self) -> int:
        """429s the fake has served."""
        ...

    def reply_calls(self) -> int:
        """Platform API calls the bot has made for replies (set-up calls left out)."""
        ...

    def idle_for(self) -> float:
        """Seconds since the bot's last API call."""
        ...


def ends_reply(text: str) -> bool:
    """The text holds the last word of a reply: showing it shows the whole answer."""
    return LAST_WORD in text


# --- Slack -------------------------------------------------------------------------------------------

SLACK_REPLY_METHODS = tuple(sorted(NO_RETRY_METHODS))  # the calls that show a reply


class SlackDriver:
    name = "slack"

    def __init__(self, http_port: int) -> None:
        self._port = http_port
        # Several bot processes (`bench/streams.py --workers`): events go to them in turn, as a load
        # balancer in front of them would spread them.
        self.worker_ports: list[int] = []
        self.fake: FakeSlack | None = None
        self._channels: list[str] = []
        self._undelivered: list[Turn] = []

    @property
    def _slack(self) -> FakeSlack:
        assert self.fake is not None
        return self.fake

    async def start(self, conversations: int, *, one_channel: bool) -> None:
        self.fake = FakeSlack()
        await self.fake.start()
        count = 1 if one_channel else conversations
        self._channels = [f"C{i:05d}" for i in range(count)]

    async def stop(self) -> None:
        if self.fake is not None:
            self.fake.release_held()
            await self.fake.stop()

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/slack/events"

    def _events_url_for(self, turn: Turn) -> str:
        if not self.worker_ports:
            return self.events_url
        port = self.worker_ports[turn.conversation % len(self.worker_ports)]
        return f"http://127.0.0.1:{port}/slack/events"

    def env(self) -> dict[str, str]:
        return {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_MODE": "http",
            "SLACK_API_URL": self._slack.api_url,
        }

    async def connected(self) -> None:
        return None  # HTTP mode: /readyz already means auth.test answered

    def conversation(self, turn: Turn) -> None:
        channel = self._channels[turn.conversation % len(self._channels)]
        event = self._slack.user_message(channel, f"<@{BOT_USER}> {turn.text}")
        turn.key = f"{channel}:{event['ts']}"
        turn.ref = ConversationRef("slack", TEAM, channel, event["ts"])
        turn.platform["event"] = mention(event)

    def follow_up(self, turn: Turn, first: Turn) -> None:
        turn.key, turn.ref = first.key, first.ref
        channel, root = first.key.split(":")
        turn.platform["event"] = self._slack.user_message(channel, turn.text, thread_ts=root)

    async def send(self, turn: Turn) -> None:
        turn.sent_at = time.monotonic()
        await self._post(turn, retry=None)

    async def _post(self, turn: Turn, retry: int | None) -> None:
        event = turn.platform["event"]
        event_id = turn.platform.setdefault("event_id", f"Ev{turn.qid.upper()}")
        try:
            status, _ = await self._slack.post_event(
                self._events_url_for(turn), event, event_id=event_id, retry_num=retry
            )
        except (aiohttp.ClientError, TimeoutError):
            status = 0
        if status == 200:
            turn.platform["acked"] = True
        else:
            self._undelivered.append(turn)

    def delivered(self, turns: Sequence[Turn]) -> bool:
        return all(t.platform.get("acked") for t in turns)

    async def after_restart(self) -> None:
        pending, self._undelivered = self._undelivered, []
        for turn in pending:
            attempt = turn.platform["retries"] = turn.platform.get("retries", 0) + 1
            await self._post(turn, retry=attempt)

    def texts(self) -> dict[str, list[Shown]]:
        found: dict[str, list[Shown]] = {}
        for message in list(self._slack.messages.values()):
            key = f"{message.channel}:{message.thread_ts or message.ts}"
            if not message.bot:
                found.setdefault(key, []).append(Shown(float(message.ts), asked=question_id(message.text)))
                continue
            blocks = message.blocks or []
            if blocks and not message.chunks and all(b.get("type") == "context" for b in blocks):
                continue  # a tool or notice context line, not answer text
            found.setdefault(key, []).append(Shown(float(message.ts), message.text))
        return found

    def hold_finals(self, on: bool) -> None:
        self._slack.hold = self._holds if on else None

    @staticmethod
    def _holds(method: str, args: Mapping[str, Any]) -> bool:
        if method == "chat.stopStream":
            return True  # the end of a native stream: the rest of the text and the notes ride on it
        if method in ("chat.postMessage", "chat.update"):
            # A message with buttons carries its text in `text` (and blocks), not in markdown_text.
            return ends_reply(str(args.get("markdown_text") or args.get("text") or ""))
        if method in ("chat.startStream", "chat.appendStream"):
            chunks = args.get("chunks") or []
            chunks = json.loads(chunks) if isinstance(chunks, str) else chunks
            return any(ends_reply(str(c.get("text") or "")) for c in chunks if isinstance(c, dict))
        return False

    def held(self) -> int:
        return len(self._slack.held)

    def release(self) -> None:
        self._slack.release_held()

    def storm(self, seconds: float, retry_after: float) -> None:
        self._slack.storm(SLACK_REPLY_METHODS, seconds, retry_after=retry_after)

    def rate_limited(self) -> int:
        return self._slack.rate_limited

    def reply_calls(self) -> int:
        return sum(1 for call in self._slack.calls if call.method in SLACK_REPLY_METHODS)

    def idle_for(self) -> float:
        calls = self._slack.calls
        return time.perf_counter() - calls[-1].at if calls else float("inf")


# --- Discord -----------------------------------------------------------------------------------------

DISCORD_REPLY_ROUTES = (
    ("POST", r"^/channels/\d+/messages$"),
    ("PATCH", r"^/channels/\d+/messages/\d+$"),
    ("DELETE", r"^/channels/\d+/messages/\d+$"),
    ("POST", r"^/channels/\d+/typing$"),
    ("POST", r"^/channels/\d+/messages/\d+/threads$"),
    ("POST", r"^/webhooks/"),
    ("PATCH", r"^/webhooks/"),
    ("DELETE", r"^/webhooks/"),
)
_DISCORD_SETUP = ("/users/@me", "/oauth2/", "/commands")


class DiscordDriver:
    """`/ask` per channel, or (one_channel) @mentions that each open a thread in one channel."""

    name = "discord"

    def __init__(self) -> None:
        self.fake: FakeDiscord | None = None
        self._one_channel = False
        self._channels: list[int] = []
        self._sessions = 0
        self._asked: list[tuple[str, Shown]] = []  # (conversation key, marker) for each /ask sent

    @property
    def _discord(self) -> FakeDiscord:
        assert self.fake is not None
        return self.fake

    async def start(self, conversations: int, *, one_channel: bool) -> None:
        self._one_channel = one_channel
        self.fake = FakeDiscord(channels_per_guild=1 if one_channel else conversations)
        await self.fake.start()
        self._channels = [int(c["id"]) for c in self.fake.channels.values() if c["type"] == 0]

    async def stop(self) -> None:
        if self.fake is not None:
            self.fake.release_held()
            await self.fake.stop()

    def env(self) -> dict[str, str]:
        return {
            "DISCORD_BOT_TOKEN": DISCORD_TOKEN,
            "DISCORD_API_URL": self._discord.api_url,
            "DISCORD_GATEWAY_URL": self._discord.gateway_url,
        }

    async def connected(self) -> None:
        fake = self._discord
        deadline = time.monotonic() + 60
        while len(fake.sessions) <= self._sessions or not fake.commands or not fake.identified.is_set():
            if time.monotonic() > deadline:
                raise RuntimeError("the bot never identified on the fake Discord gateway")
            await asyncio.sleep(0.05)
        self._sessions = len(fake.sessions)

    def conversation(self, turn: Turn) -> None:
        fake = self._discord
        if self._one_channel:
            channel = self._channels[0]
            turn.platform["channel"] = channel
            turn.key = ""  # the thread's id is the mention's, known once it is sent
            return
        channel = self._channels[turn.conversation % len(self._channels)]
        turn.platform["channel"] = channel
        turn.key = str(channel)
        turn.ref = ConversationRef("discord", str(fake.guild_id), str(channel))

    def follow_up(self, turn: Turn, first: Turn) -> None:
        if self._one_channel:
            # One-channel runs (the storm) send first messages only; a follow-up needs its own channel.
            raise ValueError("follow-ups need one channel per conversation (one_channel=False)")
        turn.key, turn.ref = first.key, first.ref
        turn.platform["channel"] = first.platform["channel"]

    async def send(self, turn: Turn) -> None:
        fake = self._discord
        channel = turn.platform["channel"]
        turn.sent_at = time.monotonic()
        if self._one_channel:
            payload = await fake.user_message(turn.text, channel=channel, mention_bot=True)
            turn.key = payload["id"]
            turn.ref = ConversationRef("discord", str(fake.guild_id), str(channel), payload["id"])
        else:
            # Snowflakes are minted from the clock: every message the bot posts later sorts after it.
            self._asked.append((turn.key, Shown(discord_wire.snowflake(), asked=turn.qid)))
            interaction = await fake.slash("ask", {"prompt": turn.text}, channel=channel)
            turn.platform["interaction"] = interaction.id
        turn.platform["dispatched"] = True

    def delivered(self, turns: Sequence[Turn]) -> bool:
        return all(t.platform.get("dispatched") for t in turns)

    async def after_restart(self) -> None:
        return None  # the gateway does not redeliver what a dead session was sent

    def texts(self) -> dict[str, list[Shown]]:
        found: dict[str, list[Shown]] = {}
        for key, marker in self._asked:
            found.setdefault(key, []).append(marker)
        bot = str(self._discord.bot_id)
        for message in list(self._discord.messages.values()):
            channel = message["channel_id"]
            if message["author"]["id"] != bot:
                if channel in self._discord.threads_of.values() or not self._one_channel:
                    continue
                # A mention in the one channel: its thread (same id) holds the answer.
                found.setdefault(message["id"], []).append(Shown(0, asked=question_id(message["content"])))
                continue
            if message["flags"] & discord_wire.FLAG_EPHEMERAL:
                continue
            found.setdefault(channel, []).append(Shown(int(message["id"]), message["content"]))
        return found

    def spinners(self) -> int:
        """Interaction responses still showing "thinking…" (deferred and never edited)."""
        bot = str(self._discord.bot_id)
        return sum(
            1
            for m in self._discord.messages.values()
            if m["author"]["id"] == bot and m["flags"] & discord_wire.FLAG_LOADING
        )

    def hold_finals(self, on: bool) -> None:
        self._discord.hold = self._holds if on else None

    @staticmethod
    def _holds(method: str, path: str, body: Any) -> bool:
        if method not in ("POST", "PATCH") or not isinstance(body, dict):
            return False
        return ends_reply(str(body.get("content") or ""))

    def held(self) -> int:
        return len(self._discord.held)

    def release(self) -> None:
        self._discord.release_held()

    def storm(self, seconds: float, retry_after: float) -> None:
        self._discord.storm(DISCORD_REPLY_ROUTES, seconds, retry_after=retry_after)

    def rate_limited(self) -> int:
        return self._discord.received_429

    def reply_calls(self) -> int:
        return sum(1 for call in self._discord.calls if not any(s in call.path for s in _DISCORD_SETUP))

    def idle_for(self) -> float:
        calls = self._discord.calls
        return time.perf_counter() - calls[-1].at if calls else float("inf")
