"""Slack event payloads -> what the adapter acts on. Pure functions: no I/O, no Slack library."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from adapters.slack.images import FileRef, file_refs
from core.commands import COMMANDS
from core.conversation import ImageBlock
from core.inbound import ConversationRef, InboundMessage, Sender

PLATFORM = "slack"
# Messages that are people talking; edits, deletions, joins and bot posts are not.
_CONVERSATION_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})
_COMMAND_WORDS = frozenset(c.name for c in COMMANDS) | {"start"}
_ONE_WORD_ARG = frozenset({"model"})  # commands that may take a single argument as a bare word
_MASS_MENTION = re.compile(r"<!(channel|here|everyone)(\|[^>]*)?>")


@dataclass(frozen=True, slots=True)
class Incoming:
    """One human message addressed to (or overheard by) the bot."""

    team: str  # the workspace the app is installed in (session key part)
    user_team: str  # the sender's own team (differs in shared channels); streams need it
    channel: str
    user: str
    text: str  # with the bot's mention removed
    ts: str
    thread_ts: str | None  # the thread it was posted in; None for a top-level message
    is_dm: bool
    mentioned: bool
    files: tuple[FileRef, ...] = ()  # attached files (images are downloaded before answering)

    @property
    def root(self) -> str:
        """The thread the reply goes to: a top-level message opens a thread under itself."""
        return self.thread_ts or self.ts

    @property
    def in_existing_thread(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts

    @property
    def event_key(self) -> str:
        # The message itself, not the envelope: constant across retries and socket redeliveries, and
        # the same for the `app_mention` and `message` events Slack sends for one mention.
        return f"{self.channel}:{self.ts}"

    @property
    def ref(self) -> ConversationRef:
        return ConversationRef(PLATFORM, self.team, self.channel, self.root)

    def inbound(self, text: str | None = None, images: tuple[ImageBlock, ...] = ()) -> InboundMessage:
        return InboundMessage(
            self.ref,
            Sender(self.user),
            self.text if text is None else text,
            self.event_key,
            images=images,
            is_dm=self.is_dm,
        )


def is_from_bot(event: Mapping[str, Any]) -> bool:
    return bool(event.get("bot_id") or event.get("bot_profile")) or event.get("subtype") == "bot_message"


def parse_message_event(
    body: Mapping[str, Any], event: Mapping[str, Any], bot_user_id: str
) -> Incoming | None:
    """An `app_mention` or `message` event -> Incoming, or None when it is not a person talking."""
    if is_from_bot(event) or event.get("subtype") not in _CONVERSATION_SUBTYPES:
        return None
    user, channel, ts = event.get("user"), event.get("channel"), event.get("ts")
    if not (isinstance(user, str) and isinstance(channel, str) and isinstance(ts, str)):
        return None
    if user == bot_user_id:
        return None
    text = event.get("text")
    raw = text if isinstance(text, str) else ""  # anything else is not words a person wrote
    mention = f"<@{bot_user_id}"
    team = str(body.get("team_id") or event.get("team") or "")
    thread_ts = event.get("thread_ts")
    return Incoming(
        team=team,
        user_team=str(event.get("user_team") or event.get("team") or team),
        channel=channel,
        user=user,
        text=strip_mention(raw, bot_user_id),
        ts=ts,
        thread_ts=thread_ts if isinstance(thread_ts, str) else None,
        is_dm=event.get("channel_type") == "im" or channel.startswith("D"),
        mentioned=event.get("type") == "app_mention" or mention in raw,
        files=file_refs(event.get("files")),
    )


def strip_mention(text: str, bot_user_id: str) -> str:
    """Remove the bot's own `<@U…>` / `<@U…|name>` mentions; other mentions stay."""
    return re.sub(rf"<@{re.escape(bot_user_id)}(\|[^>]*)?>", "", text).strip()


def as_command_text(text: str) -> str:
    """Words to the bot that are a core command become `/name args`; an empty mention asks for help.

    Only a whole message counts ("new", "stop", "model openai:gpt-4o"), so "help me with X" stays a
    question.
    """
    words = text.split()
    if not words:
        return "/help"
    name = words[0].lower()
    if name in _COMMAND_WORDS and (len(words) == 1 or (len(words) == 2 and name in _ONE_WORD_ARG)):
        return "/" + " ".join([name, *words[1:]])
    return text


def slash_command_text(text: str) -> str:
    """`/ai model x` arrives as text "model x": the core command is its first word (default: help)."""
    stripped = text.strip().lstrip("/")
    return "/" + stripped if stripped else "/help"


def defuse_mass_mentions(text: str) -> str:
    """The model must never page a whole channel: `<!channel>` / `<!here>` become plain words."""
    return _MASS_MENTION.sub(lambda m: "@" + m.group(1), text)


def thread_context(
    messages: Iterable[Mapping[str, Any]], current_ts: str, bot_user_id: str, limit: int
) -> str:
    """Earlier messages of a thread as a preface, so a mid-thread mention knows what was said."""
    lines: list[str] = []
    for message in messages:
        ts = message.get("ts")
        if not isinstance(ts, str) or _ts_value(ts) >= _ts_value(current_ts):
            continue
        text = str(message.get("text") or "").strip()
        if not text:
            continue
        who = "bot" if is_from_bot(message) else f"<@{message.get('user', 'someone')}>"
        lines.append(f"{who}: {strip_mention(text, bot_user_id)}")
    lines = lines[-limit:] if limit else []
    if not lines:
        return ""
    return "Earlier messages in this thread, for context:\n" + "\n".join(lines)


def with_context(preface: str, text: str) -> str:
    return f"{preface}\n\nMy message: {text}" if preface else text


def _ts_value(ts: str) -> float:
    try:
        return float(ts)
    except ValueError:
        return 0.0
