"""Slack settings (SLACK_*). The adapter is enabled when SLACK_BOT_TOKEN is set."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SlackSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SLACK_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    bot_token: SecretStr | None = None  # xoxb-…, always needed
    app_token: SecretStr | None = None  # xapp-… with connections:write: Socket Mode (default)
    signing_secret: SecretStr | None = None  # HTTP Events API mode, served on the bot's HTTP server
    mode: Literal["socket", "http"] | None = None  # default: socket if SLACK_APP_TOKEN is set, else http
    api_url: str = "https://slack.com/api/"  # Web API base (GovSlack, local test servers)
    events_path: str = "/slack/events"  # HTTP mode: events, commands and interactivity
    slash_command: str = "/ai"
    require_mention: bool = False  # True: thread replies need an @mention too

    # Rendering. Native streaming (chat.startStream/appendStream/stopStream) is the default; False posts
    # and edits instead (chat.postMessage + chat.update), e.g. for hosts without the streaming methods.
    native_streaming: bool = True
    # The presenter's pace: least seconds between two interim updates of one answer, with native
    # streaming (appends; also the edits if a stream cannot start) and without it (chat.update).
    stream_interval: float = Field(0.5, gt=0, le=10)
    edit_interval: float = Field(1.0, gt=0, le=30)
    # A native stream expires after about 5 minutes; a longer turn continues in a fresh stream message.
    stream_rollover: float = Field(240.0, ge=10, le=290)
    # 429s the SDK retries per Web API call, after Retry-After. Not for reply calls (chat.*, the thread
    # status): the core's presenter retries a final answer itself and skips interim updates.
    rate_limit_retries: int = Field(3, ge=0, le=10)
    thread_context_messages: int = Field(30, ge=0, le=200)  # earlier thread messages read on a mention

    @property
    def enabled(self) -> bool:
        return self.bot_token is not None

    @property
    def connection_mode(self) -> Literal["socket", "http"]:
        return self.mode or ("socket" if self.app_token else "http")

    @model_validator(mode="after")
    def _mode_has_credentials(self) -> SlackSettings:
        if not self.enabled:
            return self
        if self.connection_mode == "socket" and not self.app_token:
            raise ValueError(
                "Socket Mode needs SLACK_APP_TOKEN (xapp-…); or set SLACK_SIGNING_SECRET for HTTP mode"
            )
        if self.connection_mode == "http" and not self.signing_secret:
            raise ValueError("HTTP mode needs SLACK_SIGNING_SECRET; or set SLACK_APP_TOKEN for Socket Mode")
        if not self.slash_command.startswith("/"):
            raise ValueError("SLACK_SLASH_COMMAND must start with /")
        if not self.events_path.startswith("/"):
            raise ValueError("SLACK_EVENTS_PATH must start with /")
        return self

    def secrets(self) -> list[str]:
        values = (self.bot_token, self.app_token, self.signing_secret)
        return [v.get_secret_value() for v in values if v is not None]
