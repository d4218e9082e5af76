"""Console chat: talk to the agent in a terminal or through a pipe (`echo hi | bot chat`).

The answer streams to stdout as it arrives; tool calls, notices and errors go to stderr, so piping the
output keeps just the answers while a terminal shows everything interleaved. In a terminal, lines are
read with readline (editing, history across runs) and a "thinking" line shows until the answer starts.

While an approval card waits, the next line answers it (y / n / a, see adapters/console/buttons.py),
also in the middle of an answer; a "+" or "-" line right after an answer rates it. Both become a
`Click` for `Router.click`, as a button press on a chat platform would.
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

from adapters.console.buttons import CARD_ANSWERS, CARD_HELP, CARD_PROMPT, Board
from adapters.console.plain import plain
from adapters.console.reader import LineReader, PromptReader, history_path, terminal_restored, tolerant
from adapters.console.surface import ConsoleSurface, Terminal
from core.actions import Click
from core.inbound import ConversationRef, InboundMessage, Sender
from core.logcontext import log_context
from core.router import Router

EXIT_WORDS = ("/exit", "/quit")
STOP_WORD = "/stop"
PROMPT = "you> "
WAITS = f"Answer the approval request first ({CARD_HELP}), or /stop the answer."
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
        self._board = Board()  # approval cards and the last answer's rating row
        self._ended = False  # the input ended: the reader has nothing more to give
        self._typed: str | None = None  # a line typed at a card that no longer waited: the next message

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
            if self._stopper is not None:  # its reply is the last thing the chat prints
                await self._stopper
        finally:
            self._remove_interrupt()

    async def _converse(self, reader: LineReader | PromptReader) -> None:
        while not self._quit.is_set():
            line, self._typed = self._typed, None
            if line is None:
                line = await self._read(reader)
            if line is None:
                await self._deny_waiting()  # a card shown by a recovered turn gets no answer now
                break
            text = line.rstrip("\n")
            if self._board.waiting_card() is not None and await self._card_line(text):
                continue
            rating = self._board.rating_for(text)
            if rating is not None:
                await self._press(rating)
                continue
            if text.strip() in EXIT_WORDS:
                break
            if not text.strip():
                continue
            self._turn = asyncio.create_task(self._answer_thinking(self._message(text)))
            try:
                await self._while_answering(reader)
            finally:
                self._turn = None

    async def _read(self, reader: LineReader | PromptReader) -> str | None:
        """The next line, prompted for what it will answer; None once the input ended (or on quit)."""
        if self._ended:
            return None
        card = self._board.waiting_card() is not None
        line = await self._next_line(reader, CARD_PROMPT if card else PROMPT)
        self._terminal.at_line_start = True  # the user's Enter ended the prompt line
        if line is None and not self._quit.is_set():
            self._ended = True  # a reader gives None once: never ask it again
        return line

    async def _while_answering(self, reader: LineReader | PromptReader) -> None:
        """Wait for the turn; each approval card it shows meanwhile takes the next line as its answer."""
        turn = self._turn
        assert turn is not None
        while True:
            if self._board.waiting_card() is None:
                card_shown = asyncio.ensure_future(self._board.changed.wait())
                await asyncio.wait({turn, card_shown}, return_when=asyncio.FIRST_COMPLETED)
                card_shown.cancel()
                if self._board.waiting_card() is None:
                    if turn.done():
                        return turn.result()
                    continue
            line = await self._read(reader)
            if line is None:  # the input ended (or Ctrl-C with the answer already over)
                await self._deny_waiting()
                continue
            if not await self._card_line(line.rstrip("\n")):
                self._typed = line  # asked after the card was decided: a message, once this turn ends

    def _reader(self) -> LineReader | PromptReader:
        if self._interactive and self._in is sys.stdin:  # readline edits the process's own terminal only
            return PromptReader(self._history or history_path())
        return LineReader(self._in)

    async def _next_line(self, reader: LineReader | PromptReader, prompt: str = PROMPT) -> str | None:
        if self._interactive:  # input() writes the prompt itself, so readline knows where the line starts
            before = "" if prompt == CARD_PROMPT else "\n"  # a card's prompt follows the card directly
            self._terminal.write(before if isinstance(reader, PromptReader) else before + prompt)
            if prompt == CARD_PROMPT:
                self._terminal.at_line_start = False  # what prints while it waits starts a new line
        getter = asyncio.ensure_future(reader.next_line(prompt, remember=prompt != CARD_PROMPT))
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
        if self._running():
            self._stopper = asyncio.create_task(self._answer(self._message(STOP_WORD)))
            self._board.stopped()
        else:
            self._quit.set()

    def surface_for(self, ref: ConversationRef, reply_address: str) -> ConsoleSurface:
        return ConsoleSurface(self._terminal, self._board)  # one terminal: every answer goes to it

    async def _answer(self, message: InboundMessage) -> None:
        await self._router.answer(message, ConsoleSurface(self._terminal, self._board))

    # --- buttons ---------------------------------------------------------------------------------------

    async def _card_line(self, text: str) -> bool:
        """`text` typed while a card was asked about; False when no card waits any more (a message)."""
        card = self._board.waiting_card()
        if card is None:
            return False
        word = text.strip().lower()
        if word == STOP_WORD:
            self._stopper = asyncio.create_task(self._answer(self._message(STOP_WORD)))
            self._board.stopped()  # the stop cancels its cards: no line (nor the end of input) answers them
            return True
        option = CARD_ANSWERS.get(word)
        action = card.actions.get(option) if option is not None else None
        if action is None:
            self._terminal.note(WAITS)
            return True
        if await self._press(action, card.message_id):
            card.waiting = False  # decided, even if the card's edit did not reach the terminal
        return True

    async def _deny_waiting(self) -> None:
        """Nobody is left to answer (the input ended): every waiting card is denied, as Enter would;
        where this user may not deny it, the answer is stopped (a pipe must not hang until expiry)."""
        while (card := self._board.waiting_card()) is not None:
            self._terminal.note("(no more input: the approval request is denied)")
            deny = card.actions.get("n")
            card.waiting = False
            if (deny is None or not await self._press(deny, card.message_id)) and self._running():
                await self._answer(self._message(STOP_WORD))

    def _running(self) -> bool:
        return self._turn is not None and not self._turn.done()

    async def _press(self, action: str, message_id: str = "") -> bool:
        """Hand a press to the core like a platform's button; show its reply. True when it counted."""
        click = Click(
            self.ref, Sender(self.user, self.user), action, uuid.uuid4().hex, message_id, is_dm=True
        )
        reply = await self._router.click(click, self.surface_for)
        if reply.text:
            self._terminal.note(("! " if reply.refused else "") + plain(reply.text))
        return not reply.refused


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (ValueError, OSError):  # closed
        return False
