"""Show an answer by posting messages and editing them: the writer for surfaces without a native stream.

The presenter paces it (core/present.py); this class only makes the messages match the text it is
given: parts within the platform's limit (split at sensible boundaries), a transient status line under
the last part, extra parts removed when the text got shorter (a restarted step). It remembers what
each message shows, so a call that failed half way is simply made again and carries on where it
stopped: that is what makes retrying the final sync safe.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.actions import Buttons
from core.surface import Capabilities, Note, Surface
from core.textsplit import open_fence, split_text

PLACEHOLDER = "…"


class EditWriter:
    def __init__(self, surface: Surface, capabilities: Capabilities) -> None:
        self._surface = surface
        self._caps = capabilities
        # (message id, text shown, buttons shown) per part
        self._shown: list[tuple[str, str, Buttons | None]] = []
        self.calls = 0  # platform calls made, for benchmarks

    @property
    def message_ids(self) -> list[str]:
        return [message_id for message_id, _, _ in self._shown]

    @property
    def started(self) -> bool:
        return bool(self._shown)

    async def placeholder(self, text: str = PLACEHOLDER) -> None:
        """Show a placeholder at once, so the user sees the bot is on it (where nothing else can)."""
        if not self._shown and self._caps.can_edit:
            await self._sync([text])

    async def show(self, text: str, status: str = "") -> None:
        """An interim update: the text so far, with `status` under it (left out where it does not fit
        the last part, so it never creates a message of its own)."""
        if self._caps.can_edit and (text or status):
            await self._sync(self._parts(text, status))

    async def finish(self, text: str, notes: Sequence[Note] = (), buttons: Buttons | None = None) -> None:
        """Make the messages show exactly `text` followed by `notes` (in the surface's small print), and
        `buttons` under the last part."""
        text = text.strip("\n")
        fence = open_fence(text)
        if fence is not None and notes:  # a cut-off answer left a code block open: notes go below it
            text += "\n" + fence[: len(fence) - len(fence.lstrip("`~"))]
        body = "\n\n".join(part for part in (text, *map(self._surface.note, notes)) if part)
        await self._sync(self._parts(body or PLACEHOLDER, ""), final=True, buttons=buttons)

    def _parts(self, text: str, status: str) -> list[str]:
        limit = self._caps.max_message_chars
        parts = split_text(text, limit) if text.strip() else [status or PLACEHOLDER]
        if status and text.strip() and len(parts[-1]) + len(status) + 2 <= limit:
            parts[-1] = f"{parts[-1]}\n\n{status}"
        return parts

    async def _sync(self, parts: list[str], *, final: bool = False, buttons: Buttons | None = None) -> None:
        for index, part in enumerate(parts):
            wanted = buttons if index == len(parts) - 1 else None  # only the last part has buttons
            if index < len(self._shown):
                message_id, shown, had = self._shown[index]
                if (shown != part or had != wanted) and self._caps.can_edit:
                    self.calls += 1
                    await self._surface.edit(message_id, part, wanted)
                    self._shown[index] = (message_id, part, wanted)
            else:
                self.calls += 1
                message_id = await self._surface.post(part, wanted)
                self._shown.append((message_id, part, wanted))
        if final:
            while len(self._shown) > len(parts):  # the text got shorter than what was shown
                message_id, _, _ = self._shown[-1]
                self.calls += 1
                await self._surface.delete(message_id)
                self._shown.pop()
