"""The console chat on bad input and in a terminal: undecodable bytes, plain-text replies, the thinking
indicator, readline history. In-process: the real core against the fake LLM server."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

import pytest

from adapters.console.adapter import PROMPT, ConsoleAdapter
from adapters.console.buttons import CARD_PROMPT
from adapters.console.plain import plain
from adapters.console.reader import PromptReader
from bot.app import open_core
from bot.config import Settings
from tests.fakes.llm_server import FakeLLMServer, Reply


class TerminalStream(io.StringIO):
    """A text stream that says it is a terminal (as sys.stderr does in a shell)."""

    def isatty(self) -> bool:
        return True


async def chat(settings: Settings, stdin: TextIO, stdout: TextIO, stderr: TextIO, **kw: bool) -> None:
    async with open_core(settings) as core:
        console = ConsoleAdapter(
            core.router,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            interactive=kw.get("interactive", False),
            user="alice",
        )
        await console.run()


async def test_invalid_utf8_on_stdin_is_answered_not_a_crash(
    settings_for: Callable[..., Settings], llm_server: FakeLLMServer
) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(b"caf\xe9 ok\n\xff\xfe second\n"), encoding="utf-8")  # strict
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)
    err = io.StringIO()
    await chat(settings_for(), stdin, stdout, err)
    asked = [body["messages"][-1]["content"][0]["text"] for body in llm_server.bodies("anthropic")]
    assert asked == ["caf\ufffd ok", "\ufffd\ufffd second"]  # both lines reached the model
    printed = stdout.buffer.getvalue().decode("utf-8")
    assert printed == "echo: caf\ufffd ok\necho: \ufffd\ufffd second\n"
    assert "Traceback" not in err.getvalue()


async def test_an_unencodable_answer_is_printed_not_a_crash(
    settings_for: Callable[..., Settings], llm_server: FakeLLMServer
) -> None:
    # A lone surrogate in the model's answer (JSON "\ud800") cannot be written as UTF-8.
    llm_server.script("anthropic", Reply.text("broken \ud800 text"))
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)
    await chat(settings_for(), io.StringIO("hi\n"), stdout, io.StringIO())
    assert stdout.buffer.getvalue().decode("utf-8") == "broken ? text\n"


async def test_an_unreadable_stdin_ends_the_chat_like_eof(
    settings_for: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(io.StringIO):
        def readline(self, size: int | None = -1, /) -> str:  # type: ignore[override]
            raise OSError("input/output error")

    await chat(settings_for(), Broken(), io.StringIO(), io.StringIO())  # returns instead of hanging
    assert "could not read the console input" in caplog.text


async def test_help_is_plain_text_in_the_console(settings_for: Callable[..., Settings]) -> None:
    out = io.StringIO()
    await chat(settings_for(), io.StringIO("/help\n"), out, io.StringIO())
    text = out.getvalue()
    assert "• /new — Start a fresh conversation" in text
    assert "`" not in text and "**" not in text


@pytest.mark.parametrize(
    ("markdown", "shown"),
    [
        ("**Usage** for _today_: `12` calls", "Usage for today: 12 calls"),
        ("# Report\n- one\n  * two", "Report\n• one\n  • two"),
        (
            "see [the docs](https://x.test/d) or https://y.test",
            "see the docs (https://x.test/d) or https://y.test",
        ),
        ("2*3*4 and snake_case_name and \\*literal\\*", "2*3*4 and snake_case_name and *literal*"),
        ("```\nkeep **this**\n```\n`a*b*c`", "keep **this**\na*b*c"),
    ],
)
def test_markdown_becomes_plain_text(markdown: str, shown: str) -> None:
    assert plain(markdown) == shown


async def test_thinking_indicator_shows_until_the_answer_starts(
    settings_for: Callable[..., Settings], llm_server: FakeLLMServer
) -> None:
    llm_server.script("anthropic", Reply.text("Here you go.", delay_s=0.3))
    screen = TerminalStream()  # stdout and stderr on one screen, as in a terminal
    await chat(settings_for(), io.StringIO("hi\n"), screen, screen, interactive=True)
    shown = screen.getvalue()
    prompt_at, thinking_at = shown.index(f"\n{PROMPT}"), shown.index("⠋ thinking…")
    # The indicator's line is wiped before the first word of the answer is written over it.
    assert prompt_at < thinking_at < shown.index("\r\x1b[KHere you go.\n")
    assert shown.count("Here you go.") == 1


async def test_no_indicator_when_stderr_is_not_a_terminal(settings_for: Callable[..., Settings]) -> None:
    out, err = io.StringIO(), io.StringIO()
    await chat(settings_for(), io.StringIO("hi\n"), out, err, interactive=True)
    assert "thinking" not in out.getvalue() + err.getvalue()
    assert "\x1b" not in out.getvalue() + err.getvalue()


@pytest.fixture
def readline_history() -> Iterator[None]:
    readline = pytest.importorskip("readline")
    readline.clear_history()
    try:
        yield
    finally:
        readline.clear_history()


async def test_prompt_reader_keeps_history_across_runs(tmp_path: Path, readline_history: None) -> None:
    import readline

    history = tmp_path / "state" / "console_history"
    history.parent.mkdir()
    history.write_text("from last time\n", encoding="utf-8")
    prompts: list[str] = []
    typed = iter(["a new question"])

    def read(prompt: str) -> str:  # what input() does with readline: the line lands in the history
        prompts.append(prompt)
        try:
            line = next(typed)
        except StopIteration:
            raise EOFError from None
        readline.add_history(line)
        return line

    reader = PromptReader(history, read)
    reader.start()
    assert await reader.next_line(PROMPT) == "a new question\n"
    assert await reader.next_line(PROMPT) is None  # Ctrl-D
    assert prompts == [PROMPT, PROMPT]
    assert readline.get_history_item(1) == "from last time"  # loaded for the arrow keys
    assert history.read_text(encoding="utf-8").splitlines() == ["from last time", "a new question"]


async def test_prompt_reader_creates_a_private_history_file(tmp_path: Path, readline_history: None) -> None:
    import readline

    history = tmp_path / "new" / "console_history"

    def read(prompt: str) -> str:
        readline.add_history("secret-ish")
        return "secret-ish"

    reader = PromptReader(history, read)
    reader.start()
    await reader.next_line(PROMPT)
    await asyncio.sleep(0)
    assert history.stat().st_mode & 0o777 == 0o600


async def test_notices_are_plain_text_in_the_console(
    settings_for: Callable[..., Settings], llm_server: FakeLLMServer
) -> None:
    llm_server.script("anthropic", Reply.text("overloaded").with_(status=529), Reply.text("fine now"))
    err = io.StringIO()
    await chat(settings_for(), io.StringIO("hello\n"), io.StringIO(), err)
    retry = [line for line in err.getvalue().splitlines() if "retrying" in line]
    assert retry and not any("_" in line for line in retry), err.getvalue()  # no Markdown emphasis


async def test_card_answers_stay_out_of_the_history(tmp_path: Path, readline_history: None) -> None:
    import readline

    history = tmp_path / "console_history"
    typed = iter(["post a note", "y"])

    def read(prompt: str) -> str:
        line = next(typed)
        readline.add_history(line)
        return line

    reader = PromptReader(history, read)
    reader.start()
    assert await reader.next_line(PROMPT) == "post a note\n"
    assert await reader.next_line(CARD_PROMPT, remember=False) == "y\n"
    assert readline.get_current_history_length() == 1  # arrow-up finds the question, not the "y"
    assert history.read_text(encoding="utf-8").splitlines() == ["post a note"]
