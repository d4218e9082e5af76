"""The Telegram driver for bench/delivery.py: the bot long-polls the fake Bot API
(tests/fakes/telegram_server.py) in this process.

A conversation is a private chat (the whole chat is one conversation; answers stream as drafts, then
the final message); with `one_channel`, one supergroup where each message @mentions the bot and starts
its own reply chain (answers stream by editing a message, within the bot's own 20-messages-a-minute
budget per group). The fake forgets an update only once a later getUpdates confirms it, as Telegram
does, so whatever the killed bot fetched but never stored is fetched again after the restart.

The 429 storm and the held final calls live in a subclass of the fake here (`BenchTelegram`): the
storm answers every reply method 429 with `parameters.retry_after`, as Telegram does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.harness import LAST_WORD, Shown, Turn, qid_of
from core.inbound import ConversationRef
from tests.fakes.telegram_server import BOT_USERNAME, TOKEN, Call, FakeTelegram

REPLY_METHODS = frozenset(
    {"sendMessage", "editMessageText", "sendMessageDraft", "sendChatAction", "deleteMessage", "sendPhoto"}
)
GROUP = -1001234500000


@dataclass
class _Storm:
    until: float  # time.monotonic()
    retry_after: float


class BenchTelegram(FakeTelegram):
    """The fake Bot API with a 429 storm and held calls (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.storms: list[_Storm] = []
        self.hold = False  # hold sends and edits that carry a reply's last word
        self.held: list[Call] = []
        self._released = asyncio.Event()

    def release_held(self) -> None:
        self._released.set()

    async def _answer(self, token: str, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        now = time.monotonic()
        storm = next((s for s in self.storms if now < s.until), None)
        if storm is not None and method in REPLY_METHODS:
            wait = int(storm.retry_after) if storm.retry_after.is_integer() else storm.retry_after
            return 429, {
                "ok": False,
                "error_code": 429,
                "description": f"Too Many Requests: retry after {wait}",
                "parameters": {"retry_after": wait},
            }
        if (
            self.hold
            and method in ("sendMessage", "editMessageText")
            and LAST_WORD in str(params.get("text"))
        ):
            self.held.append(Call(method, params, 0, now))
            await self._released.wait()
            return 500, {"ok": False, "error_code": 500, "description": "Internal Server Error"}
        return await super()._answer(token, method, params)


class TelegramDriver:
    name = "telegram"

    def __init__(self, *, webhook_port: int | None = None) -> None:
        """`webhook_port`: the bot's HTTP port, for webhook mode (else the bot long-polls)."""
        self._webhook_port = webhook_port
        self.fake: BenchTelegram | None = None
        self._one_channel = False
        self._served: set[int] = set()
        self._polls_seen = 0
        self._asked: list[tuple[str, Shown]] = []
        self._key_of: dict[str, str] = {}  # question id -> conversation key (group reply chains)
        self._chat_of: dict[int, dict[str, Any]] = {}

    @property
    def _telegram(self) -> BenchTelegram:
        assert self.fake is not None
        return self.fake

    async def start(self, conversations: int, *, one_channel: bool) -> None:
        self._one_channel = one_channel
        self.fake = BenchTelegram()
        await self.fake.start()
        self.fake.after_served = self._on_served
        if self._webhook_port is not None:
            self.fake.webhook_connections = 40  # Telegram's default max_connections
            self.fake.on_confirm = self._on_confirmed
        if one_channel:
            self._chat_of[0] = self.fake.group(GROUP, "Team")
        else:
            for index in range(conversations):
                self._chat_of[index] = self.fake.private_chat(10_000 + index, f"User{index}")

    def _on_served(self, ids: list[int]) -> None:
        self._served.update(ids)

    async def _on_confirmed(self, updates: list[dict[str, Any]]) -> None:
        self._served.update(int(update["update_id"]) for update in updates)

    async def stop(self) -> None:
        if self.fake is not None:
            self.fake.release_held()
            await self.fake.stop()

    def env(self) -> dict[str, str]:
        env = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": self._telegram.base_url}
        if self._webhook_port is not None:
            env["TELEGRAM_WEBHOOK_URL"] = f"http://127.0.0.1:{self._webhook_port}/telegram/webhook"
            env["TELEGRAM_WEBHOOK_SECRET"] = "bench-webhook-secret"
        return env

    async def connected(self) -> None:
        fake = self._telegram
        if self._webhook_port is not None:
            deadline = time.monotonic() + 60
            while fake.webhook is None:
                if time.monotonic() > deadline:
                    raise RuntimeError("the bot never set its webhook on the fake Bot API")
                await asyncio.sleep(0.02)
            return
        deadline = time.monotonic() + 60
        while len(fake.polls) <= self._polls_seen:
            if time.monotonic() > deadline:
                raise RuntimeError("the bot never polled the fake Bot API")
            await asyncio.sleep(0.02)
        self._polls_seen = len(fake.polls)

    def conversation(self, turn: Turn) -> None:
        chat = self._chat_of[0 if self._one_channel else turn.conversation]
        turn.platform["chat"] = chat
        if not self._one_channel:
            turn.key = str(chat["id"])
            turn.ref = ConversationRef("telegram", "", str(chat["id"]))

    def follow_up(self, turn: Turn, first: Turn) -> None:
        if self._one_channel:
            # One-group runs (the storm) send first messages only; a follow-up needs its private chat.
            raise ValueError("follow-ups need one private chat per conversation (one_channel=False)")
        turn.platform["chat"] = first.platform["chat"]
        turn.key, turn.ref = first.key, first.ref

    async def send(self, turn: Turn) -> None:
        fake = self._telegram
        chat = turn.platform["chat"]
        text = f"@{BOT_USERNAME} {turn.text}" if self._one_channel else turn.text
        update, message_id = fake.message_update(chat, text)
        if self._one_channel:
            turn.key = f"{chat['id']}:{message_id}"
            turn.ref = ConversationRef("telegram", "", str(chat["id"]), str(message_id))
            self._key_of[turn.qid] = turn.key
        self._asked.append((turn.key, Shown(message_id, asked=turn.qid)))
        turn.platform["update_id"] = update["update_id"]
        turn.sent_at = time.monotonic()
        fake.push(update)

    def delivered(self, turns: Sequence[Turn]) -> bool:
        return all(t.platform.get("update_id") in self._served for t in turns)

    async def after_restart(self) -> None:
        return None  # unconfirmed updates are still queued: the new poller fetches them

    def texts(self) -> dict[str, list[Shown]]:
        fake = self._telegram
        found: dict[str, list[Shown]] = {}
        for key, marker in self._asked:
            found.setdefault(key, []).append(marker)
        for chat_id in list(fake.chats):
            for message in fake.bot_messages(chat_id):
                found.setdefault(self._key(chat_id, message.reply_to, message.text), []).append(
                    Shown(message.message_id, message.text)
                )
        latest: dict[tuple[int, int], str] = {}
        for chat_id, draft_id, text in list(fake.drafts):
            latest[(chat_id, draft_id)] = text
        for (chat_id, _), text in latest.items():
            found.setdefault(str(chat_id), []).append(Shown(0, text, transient=True))
        return found

    def _key(self, chat_id: int, reply_to: int | None, text: str) -> str:
        if not self._one_channel:
            return str(chat_id)
        if reply_to is not None:
            return f"{chat_id}:{reply_to}"
        return self._key_of.get(qid_of(text) or "", str(chat_id))

    def hold_finals(self, on: bool) -> None:
        self._telegram.hold = on

    def held(self) -> int:
        return len(self._telegram.held)

    def release(self) -> None:
        self._telegram.release_held()

    def storm(self, seconds: float, retry_after: float) -> None:
        self._telegram.storms.append(_Storm(time.monotonic() + seconds, retry_after))

    def rate_limited(self) -> int:
        return len(self._telegram.statuses(429))  # the storm's and any other (every call is recorded)

    def reply_calls(self) -> int:
        return sum(1 for c in self._telegram.calls if c.method in REPLY_METHODS)

    def idle_for(self) -> float:
        calls = self._telegram.calls
        last = next((c.at for c in reversed(calls) if c.method != "getUpdates"), None)
        return time.monotonic() - last if last is not None else float("inf")
