"""The Telegram reply surface (core/surface.py) for one chat, and its native stream: message drafts.

The presenter (core/present.py) decides what to show and when; this module carries it out in Telegram's
idiom. Text arrives as Markdown and goes out as Telegram HTML (plain text if Telegram refuses the
entities, see outbox.py). Telegram has no status line and no ephemeral messages: the typing indicator
shows the bot is working, tool calls are a transient line under the text, a "private" reply is a plain
reply to the asker's message.

In private chats an answer streams as `sendMessageDraft` previews (`DraftStream`): animated, not
throttled, gone after 30 s. Parts beyond Telegram's 4,096 characters become real messages as soon as
the answer continues past them; `finish` turns the rest into real messages carrying exactly the final
formatting, the answer's buttons (an inline keyboard) on the last one. When the server has no drafts,
or a draft fails for good, the presenter continues with post + edit.

Every failed Bot API call is raised as `DeliveryError`: 429 (with its retry_after), timeouts, lost
connections and 5xx are transient; other refusals are permanent.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from telegram import Bot
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, RetryAfter, TelegramError

from adapters.telegram.format import footer_markdown, literal_markdown
from adapters.telegram.inbound import Target
from adapters.telegram.limiter import retry_seconds
from adapters.telegram.outbox import SPLIT_CHARS, Outbox
from adapters.telegram.settings import TelegramSettings
from core.actions import Buttons
from core.events import ToolFinished, ToolStarted
from core.render import PLACEHOLDER
from core.surface import AnswerStream, Capabilities, DeliveryError, Note, StreamClosed
from core.textsplit import split_text

log = logging.getLogger(__name__)
T = TypeVar("T")

TYPING_EVERY_S = 4.0  # Telegram shows "typing" for up to 5 s
# Draft ids only need to be unique per chat while a draft lives (30 s); a random start avoids reusing
# the previous process's ids right after a restart.
_DRAFT_IDS = itertools.count(secrets.randbelow(1 << 30) + 1)


class DraftSupport:
    """Whether the Bot API server has sendMessageDraft; switched off for good when it says no."""

    def __init__(self, enabled: bool) -> None:
        self.available = enabled

    def disable(self, reason: str) -> None:
        if self.available:
            log.warning("native drafts unavailable (%s); streaming by editing messages instead", reason)
        self.available = False


def capabilities_for(settings: TelegramSettings, target: Target, drafts: DraftSupport) -> Capabilities:
    """Drafts stream in private chats; edits count against flood limits, so groups edit more slowly."""
    drafting = target.private and settings.stream_style == "draft" and drafts.available
    if drafting:
        interval = settings.draft_interval
    elif target.private:
        interval = settings.edit_interval
    else:
        interval = settings.group_edit_interval
    return Capabilities(
        max_message_chars=SPLIT_CHARS,
        edit_interval_s=interval,
        can_edit=settings.stream_style != "off",
        native_stream=drafting,
        typing_interval_s=TYPING_EVERY_S,
    )


def delivery_error(error: TelegramError, token: str = "") -> DeliveryError:
    """A Bot API failure as the presenter sees it (never with the token in it)."""
    message = f"{type(error).__name__}: {error.message}"
    if token:
        message = message.replace(token, "<token>")
    if isinstance(error, RetryAfter):
        return DeliveryError(message, transient=True, retry_after=retry_seconds(error))
    if isinstance(error, BadRequest):  # a NetworkError subclass in PTB, but a refusal
        return DeliveryError(message, transient=False)
    # NetworkError: timeouts (TimedOut), lost connections, 5xx. Forbidden, InvalidToken, ...: for good.
    return DeliveryError(message, transient=isinstance(error, NetworkError))


class _Calls:
    """One chat's Bot API calls, with failures raised as DeliveryError."""

    def __init__(self, token: str) -> None:
        self._token = token
        self.blocked = False  # Telegram said Forbidden: the user blocked the bot, or it was removed

    async def __call__(self, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except TelegramError as error:
            raise self.error(error) from None

    def error(self, error: TelegramError) -> DeliveryError:
        if isinstance(error, Forbidden):
            self.blocked = True
        return delivery_error(error, self._token)


class TelegramSurface:
    def __init__(
        self,
        bot: Bot,
        target: Target,
        capabilities: Capabilities,
        *,
        drafts: DraftSupport,
        on_sent: Callable[[int], None] | None = None,
        busy: Callable[[], bool] | None = None,
    ) -> None:
        self.capabilities = capabilities
        self.target = target
        self._outbox = Outbox(bot, target, on_sent)
        self._calls = _Calls(bot.token)
        self._drafts = drafts
        self._busy = busy  # True when a real message to this chat would queue behind the flood limits
        self._private_parts: dict[str, int] = {}  # private reply text -> parts already sent

    @property
    def blocked(self) -> bool:
        """Telegram refused a call with Forbidden: the user's choice, not a delivery failure of ours."""
        return self._calls.blocked

    async def post(self, text: str, buttons: Buttons | None = None) -> str:
        return str(await self._calls(partial(self._outbox.send, text, buttons)))

    async def edit(self, message_id: str, text: str, buttons: Buttons | None = None) -> None:
        await self._calls(partial(self._outbox.edit, int(message_id), text, buttons))

    async def delete(self, message_id: str) -> None:
        await self._calls(partial(self._outbox.delete, int(message_id)))

    async def private(self, text: str) -> None:
        """Telegram has no ephemeral messages: a plain reply (in groups it replies to the asker's
        message). Retried after a failure, it carries on with the parts not sent yet."""
        parts = split_text(text.strip() or PLACEHOLDER, self.capabilities.max_message_chars)
        for index in range(self._private_parts.get(text, 0), len(parts)):
            await self._calls(partial(self._outbox.send, parts[index]))
            self._private_parts[text] = index + 1

    def note(self, note: Note) -> str:
        if note.kind == "footer":
            return footer_markdown(note.text)
        if note.kind == "info":
            return f"ℹ️ {footer_markdown(note.text)}"
        mark = "⏹" if note.kind == "stopped" else "⚠️"
        return f"{mark} {literal_markdown(note.text.strip())}"

    async def typing(self) -> None:
        await self._calls(self._outbox.typing)

    async def set_status(self, text: str) -> None:
        """Telegram has no status line (capabilities.status is False): never called."""

    async def post_tool(self, event: ToolStarted) -> str:
        raise DeliveryError("Telegram shows tool calls in the status line", transient=False)

    async def edit_tool(self, message_id: str, started: ToolStarted, event: ToolFinished) -> None:
        raise DeliveryError("Telegram shows tool calls in the status line", transient=False)

    async def open_stream(self) -> AnswerStream | None:
        if not (self.capabilities.native_stream and self._drafts.available):
            return None
        return DraftStream(self._outbox, self._calls, self.capabilities, self._drafts, self.note, self._busy)

    def backlogged(self) -> bool:
        """The flood limiter's budget for this chat is spent. Drafts spend none, so a drafted answer
        keeps streaming (its DraftStream decides what to do with parts that need real messages)."""
        if self.capabilities.native_stream and self._drafts.available:
            return False
        return self._busy is not None and self._busy()


@dataclass
class _Message:
    message_id: int
    text: str
    buttons: Buttons | None = None


class DraftStream:
    """One answer streamed as drafts in a private chat; the parts that are complete (and in the end all
    of them) become real messages. It remembers what each real message shows, so a call that failed is
    simply made again: `finish` is safe to retry."""

    def __init__(
        self,
        outbox: Outbox,
        calls: _Calls,
        capabilities: Capabilities,
        drafts: DraftSupport,
        note: Callable[[Note], str],
        busy: Callable[[], bool] | None = None,
    ) -> None:
        self._outbox = outbox
        self._calls = calls
        self._limit = capabilities.max_message_chars
        self._drafts = drafts
        self._note = note
        self._busy = busy
        self._messages: list[_Message] = []  # the parts that are real messages, in order
        self._draft_id = 0
        self._draft_part = -1  # the part the current draft id shows
        self._drafting = True  # False once a draft failed for good: the rest is posted and edited
        self._previewed = False  # a draft with text was shown

    @property
    def message_ids(self) -> list[str]:
        return [str(message.message_id) for message in self._messages]  # drafts vanish on their own

    async def show(self, text: str, status: str) -> None:
        parts = split_text(text, self._limit) if text.strip() else [""]
        for index, part in enumerate(parts[:-1]):
            await self._message(index, part)  # complete: the answer continued past it
        last, index = parts[-1], len(parts) - 1
        if status and not last.strip():
            last = status
        elif status and len(last) + len(status) + 2 <= self._limit:
            last = f"{last}\n\n{status}"
        if index < len(self._messages) or not self._drafting:
            await self._message(index, last)  # a restarted step shortened the text, or no drafts here
        else:
            await self._draft(index, last)

    async def tool_started(self, event: ToolStarted) -> bool:
        return False  # drafts have no tool display: the presenter's status line under the text

    async def tool_finished(self, event: ToolFinished) -> bool:
        return False

    async def finish(self, text: str, notes: Sequence[Note], buttons: Buttons | None = None) -> None:
        body = "\n\n".join(part for part in (text.strip("\n"), *map(self._note, notes)) if part)
        parts = split_text(body or PLACEHOLDER, self._limit)
        if self._drafting and not self._previewed and self._busy is not None and self._busy():
            # The answer is ready before any draft went out, but its message has to queue behind the
            # flood limits: show it as a draft meanwhile (drafts are not queued).
            self._previewed = True
            index = min(len(self._messages), len(parts) - 1)
            if index == len(self._messages):
                with contextlib.suppress(DeliveryError, StreamClosed):
                    await self._draft(index, parts[index])
        for index, part in enumerate(parts):
            await self._message(index, part, buttons if index == len(parts) - 1 else None)
        while len(self._messages) > len(parts):  # a restarted step left more parts than the answer has
            await self._calls(partial(self._outbox.delete, self._messages[-1].message_id))
            self._messages.pop()

    async def _message(self, index: int, text: str, buttons: Buttons | None = None) -> None:
        """Make part `index` a real message showing `text` and `buttons` (parts before it already are)."""
        if index < len(self._messages):
            message = self._messages[index]
            if message.text != text or message.buttons != buttons:
                await self._calls(partial(self._outbox.edit, message.message_id, text, buttons))
                message.text, message.buttons = text, buttons
            return
        message_id = await self._calls(partial(self._outbox.send, text, buttons))
        self._messages.append(_Message(message_id, text, buttons))

    async def _draft(self, index: int, text: str) -> None:
        if self._draft_part != index:  # a new part: a new animated draft
            self._draft_id, self._draft_part = next(_DRAFT_IDS), index
        try:
            await self._outbox.draft(self._draft_id, text)
        except TelegramError as error:
            problem = self._calls.error(error)
            if problem.transient:
                raise problem from None
            self._drafting = False
            if isinstance(error, InvalidToken):  # a 404: the server does not know the method
                self._drafts.disable("the Bot API server does not know sendMessageDraft")
            else:
                log.warning("a draft failed (%s); this answer continues as a message", problem)
            if not self._messages:
                raise StreamClosed("") from None  # nothing real yet: the presenter posts and edits
            await self._message(index, text)
            return
        self._previewed = self._previewed or bool(text.strip())
