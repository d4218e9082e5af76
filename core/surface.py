"""The surface seam: what a platform adapter offers for showing one conversation's replies.

The presenter (core/present.py) owns the policy: what each turn event means to the user, when to call
what, what to retry and what to skip under pressure. A `Surface` only carries out primitives in its
platform's idiom (Markdown in, the platform's dialect out) and reports failures as `DeliveryError`, so
the presenter can tell a 429 (wait `retry_after`) from a timeout (retry) from a refusal (give up).

Message ids are opaque strings chosen by the surface. Text handed to a surface is the core's Markdown,
already split to fit `Capabilities.max_message_chars`.

Buttons (core/actions.py) ride on `post`, `edit` and `AnswerStream.finish`: a message shows exactly the
buttons of the last call that wrote it, so `buttons=None` on an edit removes the ones it had (a decided
approval card, an interim part that is no longer the last).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from core.actions import Buttons
from core.events import ToolFinished, ToolStarted
from core.inbound import ConversationRef


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a conversation's surface can do, as data. Every field is read by the presenter."""

    max_message_chars: int  # one message's limit, for the Markdown the surface is given
    edit_interval_s: float  # least time between two interim updates of one message (or stream)
    can_edit: bool = True  # False: nothing is shown until the answer is complete, then it is posted
    native_stream: bool = False  # `open_stream` may return a native stream (Slack streams, drafts)
    typing_interval_s: float | None = None  # re-send the typing indicator this often; None: none
    status: bool = False  # a status line outside the messages (Slack's thread status)
    rich_tools: bool = False  # tool calls get their own messages (`post_tool` / `edit_tool`)


class DeliveryError(Exception):
    """A platform call failed. `transient`: worth trying again (429, 5xx, timeout, connection lost);
    otherwise the platform refused it for good (bad request, no access, gone). `retry_after`: the wait
    the platform asked for, in seconds. The message never contains a secret."""

    def __init__(
        self,
        message: str,
        *,
        transient: bool,
        retry_after: float | None = None,
        platform_wide: bool = False,
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after
        # The limit is the whole bot's on this platform (a global or per-workspace limit), not just this
        # conversation's: every conversation then holds back its optional calls.
        self.platform_wide = platform_wide


class StreamClosed(Exception):
    """A native stream cannot take more (it could not start, expired, or the platform turned it off).
    `shown` is the text it made visible for good; the presenter continues the rest with post + edit."""

    def __init__(self, shown: str) -> None:
        super().__init__("native stream closed")
        self.shown = shown


NoteKind = Literal["info", "failure", "stopped", "footer"]


@dataclass(frozen=True, slots=True)
class Note:
    """A line shown under an answer that is not part of it: a lasting notice, a failure, the footer."""

    kind: NoteKind
    text: str


class AnswerStream(Protocol):
    """A native stream for one answer. The presenter paces it (at most one `show` per
    `edit_interval_s`); the stream decides how to make the platform show `text`."""

    async def show(self, text: str, status: str) -> None:
        """Make the stream show `text`: the whole answer so far (usually what it showed plus more; after
        a restarted step, possibly less), and `status` (a transient line: tools, notices) where the
        stream can show one. Raises DeliveryError (skipped: a later call catches up) or StreamClosed."""
        ...

    async def tool_started(self, event: ToolStarted) -> bool:
        """Show a running tool call inside the stream; False if this stream cannot (the presenter then
        shows it the surface's way). Raises DeliveryError (the call is then not shown)."""
        ...

    async def tool_finished(self, event: ToolFinished) -> bool:
        """Show that the call finished, like `tool_started`."""
        ...

    async def finish(self, text: str, notes: Sequence[Note], buttons: Buttons | None = None) -> None:
        """Make the final answer `text` (and `notes` under it) the lasting content, with `buttons` under
        it, and end the stream. Must be safe to call again after a DeliveryError (the presenter retries
        it). Raises StreamClosed when the rest must be posted instead."""
        ...

    @property
    def message_ids(self) -> Sequence[str]:
        """The platform messages this stream made to show the answer (recorded with the turn, so an
        answer shown again after a restart can remove what the killed process left)."""
        ...


class Surface(Protocol):
    """One conversation's reply primitives, bound by the adapter to its destination."""

    capabilities: Capabilities

    async def post(self, text: str, buttons: Buttons | None = None) -> str:
        """Post a message with `text` (a part of the answer, a whole short reply, an approval card) and
        `buttons` under it; return its id (the form a `Click.message_id` on it comes back in)."""
        ...

    async def edit(self, message_id: str, text: str, buttons: Buttons | None = None) -> None:
        """Make the message show `text` and exactly `buttons` (None: no buttons)."""
        ...

    async def delete(self, message_id: str) -> None:
        """Remove a message the presenter posted (a transient notice, an unused placeholder)."""
        ...

    async def private(self, text: str) -> None:
        """Show `text` to the person who wrote the message alone (command answers, refusals); where the
        platform has no private messages here, the most discreet reply it has. Retried whole after a
        transient DeliveryError: a reply sent in several parts must not repeat the parts that landed."""
        ...

    def note(self, note: Note) -> str:
        """`note` as a Markdown paragraph in this platform's small print (appended under answers)."""
        ...

    async def typing(self) -> None:
        """Show the typing indicator once (the presenter repeats it every `typing_interval_s`)."""
        ...

    async def set_status(self, text: str) -> None:
        """Set (or with "" clear) the status line; only called when `capabilities.status`."""
        ...

    async def post_tool(self, event: ToolStarted) -> str:
        """A running tool call as its own message; only called when `capabilities.rich_tools`."""
        ...

    async def edit_tool(self, message_id: str, started: ToolStarted, event: ToolFinished) -> None:
        """Show the finished call in the message `post_tool` made."""
        ...

    async def open_stream(self) -> AnswerStream | None:
        """A native stream for the answer, or None (then post + edit). Only called when
        `capabilities.native_stream`; it must not call the platform yet (the first `show` does)."""
        ...

    def backlogged(self) -> bool:
        """True when a message to this conversation would queue now in the adapter's own rate limiter
        (a spent budget): the presenter then skips what is optional, so the final text is not queued
        behind stale interim updates."""
        ...


# An adapter's `surface_for`: the reply surface of a conversation, from the reply address it stored with
# the message (redelivery after a restart, approval cards, regenerated answers).
SurfaceFor = Callable[[ConversationRef, str], Surface]
