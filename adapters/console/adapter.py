"""Console chat: talk to the agent in a terminal or through a pipe (`echo hi | bot chat`).

The answer streams to stdout as it arrives; tool calls, notices and errors go to stderr, so piping the
output keeps just the answers while a terminal shows everything interleaved.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import signal
import threading
import uuid
from typing import TextIO

from core.events import (
    AgentEvent,
    CommandReply,
    Notice,
    Refused,
    TextDelta,
    ToolFinished,
    ToolStarted,
    TurnDone,
    TurnFailed,
)
from core.inbound import ConversationRef, InboundMessage, Sender
from core.router import Router

EXIT_WORDS = ("/exit", "/quit")
_RESULT_PREVIEW = 160


def summarize_arguments(arguments: dict[str, object], limit: int = 80) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def preview(text: str, limit: int = _RESULT_PREVIEW) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class ConsoleAdapter:
    name = "console"

    def __init__(
        self,
        router: Router,
        *,
        stdin: TextIO,
        stdout: TextIO,
        stderr: TextIO,
        interactive: bool,
        user: str | None = None,
    ) -> None:
        self._router = router
        self._in, self._out, self._err = stdin, stdout, stderr
        self._interactive = interactive
        self.user = user or getpass.getuser()
        self.ref = ConversationRef("console", "local", self.user)
        self._at_line_start = True
        self._after_note = False
        self._turn: asyncio.Task[None] | None = None
        self._stopper: asyncio.Task[None] | None = None
        self._quit = asyncio.Event()

    def _message(self, text: str) -> InboundMessage:
        return InboundMessage(self.ref, Sender(self.user, self.user), text, uuid.uuid4().hex, is_dm=True)

    async def run(self, *, fresh: bool = False) -> None:
        for note in await self._router.recover(self.ref.platform):
            self._note(f"note: {note.text}")
        if fresh:
            await self._answer(self._message("/new"))
        if self._interactive:
            self._note(
                "Chatting with the bot. /help for commands, /exit or Ctrl-D to leave, Ctrl-C stops an answer."
            )
        lines = self._start_reader()
        self._install_interrupt()
        while not self._quit.is_set():
            if self._interactive:
                self._write("\nyou> ")
            line = await self._next_line(lines)
            self._at_line_start = True  # the user's Enter ended the prompt line
            if line is None or line.strip() in EXIT_WORDS:
                break
            if not line.strip():
                continue
            self._turn = asyncio.create_task(self._answer(self._message(line.rstrip("\n"))))
            try:
                await self._turn
            finally:
                self._turn = None

    async def _next_line(self, lines: asyncio.Queue[str | None]) -> str | None:
        getter = asyncio.ensure_future(lines.get())
        quitter = asyncio.ensure_future(self._quit.wait())
        done, pending = await asyncio.wait({getter, quitter}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        return getter.result() if getter in done else None

    def _start_reader(self) -> asyncio.Queue[str | None]:
        """Read stdin on a daemon thread: a blocked read must never keep the process alive at exit."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | None] = asyncio.Queue()

        def read() -> None:
            for line in iter(self._in.readline, ""):
                loop.call_soon_threadsafe(queue.put_nowait, line)
            loop.call_soon_threadsafe(queue.put_nowait, None)

        threading.Thread(target=read, name="console-stdin", daemon=True).start()
        return queue

    def _install_interrupt(self) -> None:
        if not self._interactive:
            return
        # Not the main thread or not supported: Ctrl-C keeps its default meaning.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self._interrupt)

    def _interrupt(self) -> None:
        if self._turn is not None and not self._turn.done():
            self._stopper = asyncio.create_task(self._answer(self._message("/stop")))
        else:
            self._quit.set()

    async def _answer(self, message: InboundMessage) -> None:
        async for event in self._router.handle(message):
            self.render(event)

    def render(self, event: AgentEvent) -> None:
        if isinstance(event, TextDelta):
            self._write(self._after_tool_lines(event.text) if self._after_note else event.text)
        elif isinstance(event, ToolStarted):
            self._note(f"⚙ {event.name}({summarize_arguments(event.arguments)})")
        elif isinstance(event, ToolFinished):
            mark = "✗" if event.is_error else "✓"
            self._note(f"{mark} {event.name} ({event.duration_s:.2f}s): {preview(event.output)}")
        elif isinstance(event, Notice):
            self._note(f"… {event.text}")
        elif isinstance(event, CommandReply | Refused):
            self._end_line()
            self._write(event.text + "\n")
        elif isinstance(event, TurnDone):
            self._end_line()
        elif isinstance(event, TurnFailed):
            self._end_line()
            self._note(f"! {event.message}")

    def _after_tool_lines(self, text: str) -> str:
        """Between steps the core sends a blank line; after tool lines one line break is enough."""
        stripped = text.lstrip("\n")
        if stripped == text:
            return text
        return stripped if self._at_line_start else "\n" + stripped

    def _write(self, text: str) -> None:
        if text:
            self._out.write(text)
            self._out.flush()
            self._at_line_start = text.endswith("\n")
            self._after_note = False

    def _end_line(self) -> None:
        if not self._at_line_start:
            self._write("\n")

    def _note(self, text: str) -> None:
        if self._interactive:
            self._end_line()  # stdout and stderr share the terminal: do not cut into a line of the answer
        self._out.flush()
        self._err.write(text + "\n")
        self._err.flush()
        self._after_note = True
