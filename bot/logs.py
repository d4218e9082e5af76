"""Logging set-up; every record passes a filter that masks secret values (API keys, tokens) and one that
adds the turn's context (platform, conversation, turn id; see core/logcontext.py).

`say` is for lines meant for the person running the bot (the "Serving …" banner, config errors): plain
text on stderr, or, with LOG_FORMAT=json, a JSON record like every other line.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from types import TracebackType
from typing import TextIO

from core import logcontext

MASK = "***"
# Short-lived credentials that appear inside URLs libraries log (e.g. discord.py's 429 warning shows
# interaction webhook URLs, whose last part is the interaction token).
_URL_TOKENS = re.compile(r"(/(?:webhooks|interactions)/\d+/)[A-Za-z0-9_.\-]{20,}")


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return _URL_TOKENS.sub(rf"\g<1>{MASK}", text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC ISO 8601), level, logger, message, exc (traceback or null).
    Runs after RedactSecrets, which has already masked the message and the traceback text."""

    def format(self, record: logging.LogRecord) -> str:
        exc = record.exc_text
        if record.exc_info and not exc:
            exc = self.formatException(record.exc_info)
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "exc": exc or None,
        }
        entry.update(context_of(record))
        # A lone surrogate (from a hostile payload) cannot be encoded for the stream; escape it.
        return json.dumps(entry, ensure_ascii=False).encode("utf-8", "backslashreplace").decode("utf-8")


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message [platform=… conversation=… turn_id=…]`, the context only where known."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = context_of(record)
        if not fields:
            return text
        suffix = " ".join(f"{name}={value}" for name, value in fields.items())
        head, newline, rest = text.partition("\n")  # after the message line, before a traceback
        return f"{head} [{suffix}]{newline}{rest}"


class AddContext(logging.Filter):
    """Copies the running turn's log context onto the record (unless the call passed it in `extra`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in logcontext.current().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def context_of(record: logging.LogRecord) -> dict[str, object]:
    fields = ((name, getattr(record, name, None)) for name in logcontext.FIELDS)
    return {name: value for name, value in fields if value is not None}


def make_handler(stream: TextIO, secrets: Iterable[str], log_format: str = "text") -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RedactSecrets(secrets))
    handler.addFilter(AddContext())
    return handler


SAY_LOGGER = "bot.cli"


def say(text: str, level: int = logging.INFO) -> None:
    """A line for the person running the bot: as is on stderr, or a JSON record with LOG_FORMAT=json.
    Shown whatever LOG_LEVEL is (the banner and config errors are not debugging output)."""
    logging.getLogger(SAY_LOGGER).log(level, text)


def setup_logging(level: str, secrets: Iterable[str], log_format: str = "text") -> None:
    root = logging.getLogger()
    root.handlers[:] = [make_handler(sys.stderr, secrets, log_format)]
    root.setLevel(level)
    # The HTTP client logs every request at INFO; that is noise at our default level.
    for noisy in ("httpx", "httpx2", "httpcore", "anthropic", "openai"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    speaker = logging.getLogger(SAY_LOGGER)
    speaker.handlers[:] = [_say_handler(sys.stderr, secrets, log_format)]
    speaker.setLevel(logging.INFO)
    speaker.propagate = False
    if log_format == "json":
        _everything_as_json()


def _say_handler(stream: TextIO, secrets: Iterable[str], log_format: str) -> logging.Handler:
    if log_format == "json":
        return make_handler(stream, secrets, log_format)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(RedactSecrets(secrets))
    return handler


def _everything_as_json() -> None:
    """What would reach stderr outside logging (library warnings, a crash's traceback) becomes records."""
    logging.captureWarnings(True)
    crash = logging.getLogger("bot.crash")

    def on_crash(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        crash.critical("the bot stopped on an unexpected error", exc_info=(kind, error, tb))

    def on_thread_crash(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None and not isinstance(args.exc_value, SystemExit):
            crash.error(
                "thread %s stopped on an unexpected error",
                args.thread.name if args.thread else "?",
                exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
            )

    sys.excepthook = on_crash
    threading.excepthook = on_thread_crash
