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

from adapters.console.surface import ConsoleSurface, Terminal
from core.inbound import ConversationRef, InboundMessage, Sender
from core.router import Router

EXIT_WORDS = ("/exit", "/quit")


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
        self._in = stdin
        self._interactive = interactive
        self._terminal = Terminal(stdout, stderr, interactive=interactive)
        self.user = user or getpass.getuser()
        self.ref = ConversationRef("console", "local", self.user)
        self._turn: asyncio.Task[None] | None = None
        self._stopper: asyncio.Task[None] | None = None
        self._quit = asyncio.Event()

    def _message(self, text: str) -> InboundMessage:
        return InboundMessage(self.ref, Sender(self.user, self.user), text, uuid.uuid4().hex, is_dm=True)

    async def run(self, *, fresh: bool = False) -> None:
        if await self._router.recover(self.ref.platform, self.surface_for):
            self._terminal.note("note: finishing what the last session left unanswered")
        if fresh:
            await self._answer(self._message("/new"))
        if self._interactive:
            self._terminal.note(
                "Chatting with the bot. /help for commands, /exit or Ctrl-D to leave, Ctrl-C stops an answer."
            )
        lines = self._start_reader()
        self._install_interrupt()
        while not self._quit.is_set():
            if self._interactive:
                self._terminal.write("\nyou> ")
            line = await self._next_line(lines)
            self._terminal.at_line_start = True  # the user's Enter ended the prompt line
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

    def surface_for(self, ref: ConversationRef, reply_address: str) -> ConsoleSurface:
        return ConsoleSurface(self._terminal)  # one terminal: every answer goes to it

    async def _answer(self, message: InboundMessage) -> None:
        await self._router.answer(message, ConsoleSurface(self._terminal))
