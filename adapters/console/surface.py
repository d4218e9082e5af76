"""The console's reply surface: the answer streams to stdout, everything else goes to stderr.

A terminal cannot edit what it printed, so the answer is a native stream that only ever appends; a
restarted model step (the provider's stream was cut) is said on stderr and the answer starts again.
Piping stdout keeps just the answers.

Buttons (adapters/console/buttons.py): an approval card is printed on stderr with what to type; the
buttons under an answer become one dim hint line. What is typed is matched to them by the adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from adapters.console.buttons import CARD_HELP, Board, answer_hint, card_actions
from adapters.console.plain import plain
from core.actions import Buttons
from core.events import ToolFinished, ToolStarted
from core.surface import AnswerStream, Capabilities, Note

_RESULT_PREVIEW = 160
_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_CLEAR_LINE = "\r\x1b[K"
_DIM, _RESET = "\x1b[2m", "\x1b[0m"
_NOTE_MARKS = {"info": "…", "failure": "!", "stopped": "!", "footer": "·"}

CAPABILITIES = Capabilities(max_message_chars=1_000_000, edit_interval_s=0.0, native_stream=True)


def summarize_arguments(arguments: dict[str, object], limit: int = 80) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def preview(text: str, limit: int = _RESULT_PREVIEW) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def started_line(event: ToolStarted) -> str:
    return f"⚙ {event.name}({summarize_arguments(event.arguments)})"


def finished_line(event: ToolFinished) -> str:
    mark = "✗" if event.is_error else "✓"
    return f"{mark} {event.name} ({event.duration_s:.2f}s): {preview(event.output)}"


class Terminal:
    """stdout and stderr sharing one screen: notes never cut into a line of the answer.

    With `indicator` (stderr is a terminal) a "thinking" line shows between Enter and the first thing
    the answer prints, and is wiped before that thing is written."""

    def __init__(self, stdout: TextIO, stderr: TextIO, *, interactive: bool, indicator: bool = False) -> None:
        self._out, self._err = stdout, stderr
        self._interactive = interactive
        self._indicator = indicator
        self._thinking = False
        self._frame = 0
        self.at_line_start = True
        self._after_note = False

    @property
    def interactive(self) -> bool:
        return self._interactive

    @property
    def thinking(self) -> bool:
        return self._thinking

    def start_thinking(self) -> None:
        if self._indicator and self.at_line_start and not self._thinking:
            self._thinking = True
            self._frame = 0
            self._draw_thinking()

    def tick(self) -> None:
        """The next spinner frame, while the indicator is up (called on a timer by the adapter)."""
        if self._thinking:
            self._frame += 1
            self._draw_thinking()

    def _draw_thinking(self) -> None:
        self._err.write(f"{_CLEAR_LINE}{_SPINNER[self._frame % len(_SPINNER)]} thinking…")
        self._err.flush()

    def stop_thinking(self) -> None:
        if self._thinking:
            self._thinking = False
            self._err.write(_CLEAR_LINE)
            self._err.flush()

    def write(self, text: str) -> None:
        if not text:
            return
        self.stop_thinking()
        if self._after_note:
            text = self._after_notes(text)
            if not text:  # only the line break a note already gave
                return
        self._out.write(text)
        self._out.flush()
        self.at_line_start = text.endswith("\n")
        self._after_note = False

    def _after_notes(self, text: str) -> str:
        """Between steps the core sends a blank line; after note lines one line break is enough."""
        stripped = text.lstrip("\n")
        if stripped == text:
            return text
        return stripped if self.at_line_start else "\n" + stripped

    def end_line(self) -> None:
        self.stop_thinking()
        if not self.at_line_start:
            self._out.write("\n")
            self._out.flush()
            self.at_line_start = True

    def note(self, text: str) -> None:
        self.stop_thinking()
        if self._interactive:
            self.end_line()
        self._out.flush()
        self._err.write(text + "\n")
        self._err.flush()
        self._after_note = True

    def hint(self, text: str) -> None:
        """A note in faint print where stderr is a terminal (what to type for a button)."""
        self.note(f"{_DIM}{text}{_RESET}" if self._indicator else text)


class ConsoleStream:
    """`AnswerStream` on a terminal: prints what is new; tool calls and notices as lines on stderr."""

    def __init__(self, terminal: Terminal, board: Board) -> None:
        self._terminal = terminal
        self._board = board
        self._shown = ""
        self._status = ""

    @property
    def message_ids(self) -> list[str]:
        return []  # a terminal's lines cannot be taken back

    async def show(self, text: str, status: str) -> None:
        if status and status != self._status:
            self._terminal.note(plain(status))  # a whole line: its Markdown can be taken out
        self._status = status
        if text.startswith(self._shown):
            self._terminal.write(text[len(self._shown) :])
        elif self._shown.startswith(text):
            return  # a restarted step catching up with what is already printed: nothing new yet
        else:  # the retry said something else; a terminal cannot take back what it printed
            self._terminal.note("↻ the model's stream was cut; starting this part of the answer again")
            self._terminal.write(text)
        self._shown = text

    async def tool_started(self, event: ToolStarted) -> bool:
        self._terminal.note(started_line(event))
        return True

    async def tool_finished(self, event: ToolFinished) -> bool:
        self._terminal.note(finished_line(event))
        return True

    async def finish(self, text: str, notes: Sequence[Note], buttons: Buttons | None = None) -> None:
        if self._shown.startswith(text) and self._shown != text:  # the retry ended before the cut did
            self._terminal.end_line()
            self._terminal.note(f"↻ the answer ends at: …{text[-40:]}")
            self._shown = text
        await self.show(text, "")
        self._terminal.end_line()
        for note in notes:
            self._terminal.note(console_note(note))
        show_buttons(self._terminal, self._board, buttons)


def show_buttons(terminal: Terminal, board: Board, buttons: Buttons | None) -> None:
    """The buttons under an answer: remembered for the next line, and a hint on what to type."""
    board.answer_shown(buttons)
    hint = answer_hint(buttons) if buttons is not None else ""
    if hint and terminal.interactive:  # a pipe has no one to read hints; its "+" lines still rate
        terminal.hint(hint)


def console_note(note: Note) -> str:
    return f"{_NOTE_MARKS[note.kind]} {note.text}"


class ConsoleSurface:
    """One console conversation's replies."""

    capabilities = CAPABILITIES

    def __init__(self, terminal: Terminal, board: Board) -> None:
        self._terminal = terminal
        self._board = board

    async def post(self, text: str, buttons: Buttons | None = None) -> str:
        message_id = self._board.new_id()
        actions = card_actions(buttons)
        if actions is not None:  # an approval card: beside the answer, like a tool call
            card = plain(text).rstrip("\n")
            self._terminal.note(f"{card}\n{CARD_HELP}")
            self._board.card_posted(message_id, card, actions)
            return message_id
        self._terminal.end_line()
        self._terminal.write(plain(text).rstrip("\n") + "\n")
        if buttons is not None:
            show_buttons(self._terminal, self._board, buttons)
        return message_id

    async def edit(self, message_id: str, text: str, buttons: Buttons | None = None) -> None:
        # Only cards are edited (the answer streams; replies are posted whole): a terminal cannot
        # change what it printed, so the card's new state is printed below.
        shown = plain(text).rstrip("\n")
        if self._board.card_edited(message_id, shown, buttons):
            self._terminal.note(shown)

    async def delete(self, message_id: str) -> None:
        pass

    async def private(self, text: str) -> None:
        await self.post(text)  # a terminal has one reader

    def note(self, note: Note) -> str:
        return console_note(note)

    async def typing(self) -> None:
        pass  # typing_interval_s is None: never asked

    async def set_status(self, text: str) -> None:
        pass  # capabilities.status is False: never asked

    async def post_tool(self, event: ToolStarted) -> str:
        self._terminal.note(started_line(event))
        return event.call_id

    async def edit_tool(self, message_id: str, started: ToolStarted, event: ToolFinished) -> None:
        self._terminal.note(finished_line(event))

    async def open_stream(self) -> AnswerStream:
        return ConsoleStream(self._terminal, self._board)

    def backlogged(self) -> bool:
        return False
