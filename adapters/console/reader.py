"""Reading the user's lines for the console chat, always on a daemon thread (a blocked read must neither
stall the event loop nor keep the process alive at exit).

Piped input is read line by line as it comes. In a terminal each line is read with `input()`, which
uses the stdlib `readline` module where it exists: arrow keys, Ctrl-R, and a history kept across runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import TextIO

log = logging.getLogger(__name__)

HISTORY_LINES = 1000
_APP_DIR = "teammate-bot"


def tolerant(stream: TextIO) -> TextIO:
    """Undecodable input (invalid UTF-8) becomes U+FFFD instead of an exception that would end the
    reader; text that cannot be encoded for output (a lone surrogate) becomes "?" instead of a crash."""
    if isinstance(stream, io.TextIOWrapper):
        with contextlib.suppress(ValueError, OSError):  # closed or detached stream
            stream.reconfigure(errors="replace")
    return stream


def history_path() -> Path:
    """$XDG_STATE_HOME/teammate-bot/console_history (default ~/.local/state/...)."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / _APP_DIR / "console_history"


class LineReader:
    """Lines of a piped stream, read ahead as they arrive; None at the end."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lines: asyncio.Queue[str | None] | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        self._lines = lines

        def read() -> None:
            try:
                for line in iter(self._stream.readline, ""):
                    loop.call_soon_threadsafe(lines.put_nowait, line)
            except Exception:  # an unreadable stream ends the chat like EOF, and says why
                log.warning("could not read the console input", exc_info=True)
            finally:
                loop.call_soon_threadsafe(lines.put_nowait, None)

        threading.Thread(target=read, name="console-stdin", daemon=True).start()

    async def next_line(self, prompt: str, *, remember: bool = True) -> str | None:
        """The next line (`prompt` was already written by the caller: piped input shows none)."""
        if self._lines is None:
            raise RuntimeError("start() first")
        return await self._lines.get()


class PromptReader:
    """Terminal lines, one `input(prompt)` per request (so the prompt never cuts into an answer), with
    readline editing and history when the module is there."""

    def __init__(self, history: Path | None, read: Callable[[str], str] = input) -> None:
        self._history = history
        self._read = read
        self._requests: queue.SimpleQueue[tuple[str, bool, asyncio.Future[str | None]]] = queue.SimpleQueue()
        self._readline: ModuleType | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        threading.Thread(target=self._serve, args=(loop,), name="console-prompt", daemon=True).start()

    async def next_line(self, prompt: str, *, remember: bool = True) -> str | None:
        """`remember=False`: the line stays out of the history (a y / n answer to an approval card)."""
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._requests.put((prompt, remember, future))
        return await future

    def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        self._readline = _load_readline(self._history)
        while True:
            prompt, remember, future = self._requests.get()
            line = self._read_one(prompt, remember)
            loop.call_soon_threadsafe(_settle, future, line)
            if line is None:
                return

    def _read_one(self, prompt: str, remember: bool = True) -> str | None:
        try:
            before = _history_length(self._readline)
            line = self._read(prompt)
        except EOFError:  # Ctrl-D
            return None
        except Exception:
            log.warning("could not read the console input", exc_info=True)
            return None
        if _history_length(self._readline) > before:
            if remember:
                _append_history(self._readline, self._history)
            elif self._readline is not None:
                self._readline.remove_history_item(before)  # input() added it; arrow-up skips it
        return line + "\n"


def _settle(future: asyncio.Future[str | None], line: str | None) -> None:
    if not future.done():  # the chat may have ended (Ctrl-C) while the line was typed
        future.set_result(line)


def _load_readline(history: Path | None) -> ModuleType | None:
    try:
        import readline
    except ImportError:  # e.g. Windows without pyreadline: plain input() still works
        return None
    if history is not None:
        with contextlib.suppress(OSError):
            readline.read_history_file(history)
        readline.set_history_length(HISTORY_LINES)
        if readline.get_current_history_length() > 2 * HISTORY_LINES:
            with contextlib.suppress(OSError):
                readline.write_history_file(history)  # trims the file to HISTORY_LINES
    return readline


def _history_length(readline: ModuleType | None) -> int:
    return int(readline.get_current_history_length()) if readline is not None else 0


def _append_history(readline: ModuleType | None, history: Path | None) -> None:
    if readline is None or history is None:
        return
    try:
        history.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not history.exists():
            history.touch(mode=0o600)  # what was typed may be private
        readline.append_history_file(1, history)
    except OSError:
        log.debug("could not save the console history to %s", history, exc_info=True)


@contextlib.contextmanager
def terminal_restored(stream: TextIO) -> Iterator[None]:
    """Put the terminal's settings back at exit: leaving while readline waits for a line (Ctrl-C at the
    prompt) would otherwise leave it without echo."""
    try:
        import termios
    except ImportError:  # not a POSIX system
        yield
        return
    try:
        fd = stream.fileno()
        saved = termios.tcgetattr(fd)
    except (termios.error, OSError, ValueError):  # not a terminal (io.UnsupportedOperation is an OSError)
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(termios.error, OSError):
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
