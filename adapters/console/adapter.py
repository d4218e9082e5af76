"""Console chat: talk to the agent in a terminal or through a pipe (`echo hi | bot chat`).

The answer streams to stdout as it arrives; tool calls, notices and errors go to stderr, so piping the
output keeps just the answers while a terminal shows everything interleaved. In a terminal, lines are
read with readline (editing, history across runs) and a "thinking" line shows until the answer starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import signal
import sys
import uuid
from pathlib import Path
from typing import TextIO

from adapters.console.reader import LineReader, PromptReader, history_path, terminal_restored, tolerant
from adapters.console.surface import ConsoleSurface, Terminal
from core.inbound import ConversationRef, InboundMessage, Sender
from core.logcontext import log_context
from core.router import Router

EXIT_WORDS = ("/exit", "/quit")
PROMPT = "you> "
SPIN_EVERY_S = 0.1


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
        history: Path | None = None,
    ) -> None:
        """`interactive`: a person at a terminal (prompt, Ctrl-C stops an answer). Reading `sys.stdin`
        interactively uses readline, with `history` (default: history_path()) kept across runs."""
        self._router = router
        self._in = tolerant(stdin)
        self._interactive = interactive
        indicator = interactive and _isatty(stderr)  # nothing when stderr goes to a file or pipe
        self._terminal = Terminal(
            tolerant(stdout), tolerant(stderr), interactive=interactive, indicator=indicator
        )
        self._history = history
        self.user = user or getpass.getuser()
        self.ref = ConversationRef("console", "local", self.user)
        self._turn: asyncio.Task[None] | None = None
        self._stopper: asyncio.Task[None] | None = None
        self._quit = asyncio.Event()

    def _message(self, text: str) -> InboundMessage:
        return InboundMessage(self.ref, Sender(self.user, self.user), text, uuid.uuid4().hex, is_dm=True)

    async def run(self, *, fresh: bool = False) -> None:
        restored = terminal_restored(self._in) if self._interactive else contextlib.nullcontext()
        with restored, log_context(platform=self.name):  # log lines of this chat say where they come from
            await self._chat(fresh=fresh)

    async def _chat(self, *, fresh: bool) -> None:
        if await self._router.recover(self.ref.platform, self.surface_for):
            self._terminal.note("note: finishing what the last session left unanswered")
        if fresh:
            await self._answer(self._message("/new"))
        if self._interactive:
            self._terminal.note(
                "Chatting with the bot. /help for commands, /exit or Ctrl-D to leave, Ctrl-C stops an answer."
            )
        reader = self._reader()
        reader.start()
        self._install_interrupt()
        try:
            await self._converse(reader)
        finally:
            self._remove_interrupt()

    async def _converse(self, reader: LineReader | PromptReader) -> None:
        while not self._quit.is_set():
            line = await self._next_line(reader)
            self._terminal.at_line_start = True  # the user's Enter ended the prompt line
            if line is None or line.strip() in EXIT_WORDS:
                break
            if not line.strip():
                continue
            self._turn = asyncio.create_task(self._answer_thinking(self._message(line.rstrip("\n"))))
            try:
                await self._turn
            finally:
                self._turn = None

    def _reader(self) -> LineReader | PromptReader:
        if self._interactive and self._in is sys.stdin:  # readline edits the process's own terminal only
            return PromptReader(self._history or history_path())
        return LineReader(self._in)

    async def _next_line(self, reader: LineReader | PromptReader) -> str | None:
        if self._interactive:  # input() writes the prompt itself, so readline knows where the line starts
            self._terminal.write("\n" if isinstance(reader, PromptReader) else "\n" + PROMPT)
        getter = asyncio.ensure_future(reader.next_line(PROMPT))
        quitter = asyncio.ensure_future(self._quit.wait())
        done, pending = await asyncio.wait({getter, quitter}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        return getter.result() if getter in done else None

    async def _answer_thinking(self, message: InboundMessage) -> None:
        """Answer, with the spinner turning until the answer (or a tool line) starts printing."""
        self._terminal.start_thinking()
        spinner = asyncio.create_task(self._spin()) if self._terminal.thinking else None
        try:
            await self._answer(message)
        finally:
            if spinner is not None:
                spinner.cancel()
            self._terminal.stop_thinking()

    async def _spin(self) -> None:
        while self._terminal.thinking:
            await asyncio.sleep(SPIN_EVERY_S)
            self._terminal.tick()

    def _install_interrupt(self) -> None:
        if not self._interactive:
            return
        # Not the main thread or not supported: Ctrl-C keeps its default meaning.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self._interrupt)

    def _remove_interrupt(self) -> None:
        if self._interactive:  # after the chat, Ctrl-C means Ctrl-C again
            with contextlib.suppress(NotImplementedError, RuntimeError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)

    def _interrupt(self) -> None:
        if self._turn is not None and not self._turn.done():
            self._stopper = asyncio.create_task(self._answer(self._message("/stop")))
        else:
            self._quit.set()

    def surface_for(self, ref: ConversationRef, reply_address: str) -> ConsoleSurface:
        return ConsoleSurface(self._terminal)  # one terminal: every answer goes to it

    async def _answer(self, message: InboundMessage) -> None:
        await self._router.answer(message, ConsoleSurface(self._terminal))


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (ValueError, OSError):  # closed
        return False
