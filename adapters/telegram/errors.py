"""Errors that end the Telegram adapter for good: retrying cannot help until a setting is changed."""

from __future__ import annotations


class TelegramStartError(RuntimeError):
    """Telegram refused the bot's settings (the token, the webhook URL). The message names the setting
    and never holds a secret. A RuntimeError, so code that catches that still does."""
