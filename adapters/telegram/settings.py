"""Telegram settings (TELEGRAM_*). The adapter is enabled when TELEGRAM_BOT_TOKEN is set."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


class TelegramSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TELEGRAM_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    bot_token: SecretStr | None = None
    api_url: str = "https://api.telegram.org/bot"  # Bot API base; a self-hosted Bot API server works
    # Set: webhook mode. The public HTTPS URL Telegram posts to (port 443, 80, 88 or 8443); it must reach
    # the bot's HTTP server at `webhook_path` (directly or through a reverse proxy). Unset: long polling.
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None  # checked against X-Telegram-Bot-Api-Secret-Token
    webhook_path: str = "/telegram/webhook"
    stream_style: Literal["draft", "edit", "off"] = "draft"

    # Pacing. Drafts (private chats) are cheap animated previews; edits count against flood limits
    # (about 1 message/s per chat and 20/min per group), so groups edit more slowly.
    draft_interval: float = Field(0.5, gt=0, le=10)  # least seconds between two draft updates
    edit_interval: float = Field(1.0, gt=0, le=30)  # least seconds between two edits, private chats
    group_edit_interval: float = Field(3.0, gt=0, le=60)  # least seconds between two edits, groups
    # Bot-wide cap on sent/edited messages: Telegram says about 30/s; 25 leaves room for network jitter.
    max_messages_per_second: float = Field(25.0, gt=0)
    group_messages_per_minute: float = Field(20.0, gt=0)  # per group/channel cap
    connection_pool_size: int = Field(32, ge=4, le=1024)  # concurrent Bot API requests (see README)
    poll_timeout: int = Field(30, ge=0, le=50)  # getUpdates long-poll seconds

    @property
    def enabled(self) -> bool:
        return self.bot_token is not None

    @model_validator(mode="after")
    def _webhook_needs_secret(self) -> TelegramSettings:
        if self.enabled and self.webhook_url:
            secret = self.webhook_secret.get_secret_value() if self.webhook_secret else ""
            if not _SECRET_TOKEN.match(secret):
                raise ValueError(
                    "webhook mode needs TELEGRAM_WEBHOOK_SECRET (1-256 characters: letters, digits, _ and -)"
                )
        return self

    def secrets(self) -> list[str]:
        values = (self.bot_token, self.webhook_secret)
        return [v.get_secret_value() for v in values if v is not None]
