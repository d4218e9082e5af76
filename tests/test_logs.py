"""Secrets never reach the logs; records carry the turn's context; LOG_FORMAT=json means every line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
import warnings

import pytest

from bot.logs import RedactSecrets, make_handler, say, setup_logging
from core.logcontext import log_context
from tests.corekit import restored_logging


def test_secrets_are_masked_in_messages_args_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.redaction")
    logger.addFilter(RedactSecrets(["sk-ant-abcdef123456"]))
    with caplog.at_level(logging.INFO, logger="test.redaction"):
        logger.info("calling with key %s", "sk-ant-abcdef123456")
        try:
            raise RuntimeError("bad key sk-ant-abcdef123456")
        except RuntimeError:
            logger.exception("failed")
    text = caplog.text
    assert "sk-ant-abcdef123456" not in text
    assert "calling with key ***" in text and "bad key ***" in text


def test_interaction_tokens_in_urls_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.redaction.urls")
    logger.addFilter(RedactSecrets([]))
    token = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDpzZWNyZXQtdG9rZW4"
    with caplog.at_level(logging.WARNING, logger="test.redaction.urls"):
        logger.warning("429 on PATCH https://discord.com/api/v10/webhooks/1234/%s/messages/@original", token)
    assert token not in caplog.text
    assert "/webhooks/1234/***/messages/@original" in caplog.text


# --- context fields, JSON everywhere ----------------------------------------------------------------


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


async def test_json_records_carry_the_turn_context_into_tasks_and_threads() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("test.logs.context")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(make_handler(stream, [], "json"))

    async def in_a_task() -> None:
        logger.info("from a task")

    try:
        logger.info("before")
        with log_context(platform="slack", conversation="slack|T1|C1|", turn_id=7):
            logger.info("in the turn")
            await asyncio.create_task(in_a_task())
            await asyncio.to_thread(logger.info, "from a thread")
            logger.info("explicit", extra={"turn_id": 8})
        logger.info("after")
    finally:
        logger.handlers.clear()
    before, turn, task, thread, explicit, after = json_lines(stream.getvalue())
    assert set(before) == set(after) == {"time", "level", "logger", "message", "exc"}
    for record in (turn, task, thread):
        assert (record["platform"], record["conversation"], record["turn_id"]) == ("slack", "slack|T1|C1|", 7)
    assert explicit["turn_id"] == 8 and explicit["platform"] == "slack"


def test_text_records_show_the_context_after_the_message() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("test.logs.text")
    logger.propagate = False
    logger.addHandler(make_handler(stream, [], "text"))
    try:
        with log_context(platform="telegram", turn_id=3):
            try:
                raise RuntimeError("boom")
            except RuntimeError:
                logger.exception("turn failed")
    finally:
        logger.handlers.clear()
    first, *rest = stream.getvalue().splitlines()
    assert first.endswith("ERROR test.logs.text: turn failed [platform=telegram turn_id=3]")
    assert rest[0] == "Traceback (most recent call last):"


def test_banner_warnings_and_crashes_are_json_with_log_format_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with restored_logging():
        setup_logging("WARNING", ["sk-ant-abcdef123456"], "json")
        say("Serving slack; HTTP on 0.0.0.0:8080; data in SQLite data/bot.db.")  # INFO, shown anyway
        say("config error: X: key sk-ant-abcdef123456", logging.ERROR)
        warnings.warn("a library complaint", UserWarning, stacklevel=1)
        try:
            raise KeyError("lost")
        except KeyError:
            sys.excepthook(*sys.exc_info())  # what an uncaught exception reaches
        err = capsys.readouterr().err
    banner, error, warning, crash = json_lines(err)
    assert banner["level"] == "INFO" and str(banner["message"]).startswith("Serving slack;")
    assert error["level"] == "ERROR" and error["message"] == "config error: X: key ***"
    assert warning["logger"] == "py.warnings" and "a library complaint" in str(warning["message"])
    assert crash["level"] == "CRITICAL" and "KeyError: 'lost'" in str(crash["exc"])


def test_say_is_a_plain_line_in_text_format(capsys: pytest.CaptureFixture[str]) -> None:
    with restored_logging():
        setup_logging("ERROR", [], "text")
        say("Serving telegram; HTTP on 127.0.0.1:8080; data in SQLite bot.db.")
        logging.getLogger("test.logs.quiet").info("not shown at ERROR")
        err = capsys.readouterr().err
    assert err == "Serving telegram; HTTP on 127.0.0.1:8080; data in SQLite bot.db.\n"
