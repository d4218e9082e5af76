"""Secrets never reach the logs."""

from __future__ import annotations

import logging

import pytest

from bot.logs import RedactSecrets


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
