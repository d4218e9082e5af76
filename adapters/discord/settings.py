"""Discord settings (DISCORD_*). The adapter is enabled when DISCORD_BOT_TOKEN is set."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ThreadArchiveMinutes = Literal[60, 1440, 4320, 10080]  # the durations Discord accepts


class DiscordSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DISCORD_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    bot_token: SecretStr | None = None
    api_url: str = "https://discord.com/api/v10"  # REST base (a REST proxy or a local test server)
    gateway_url: str | None = None  # gateway override (a gateway proxy or a local test server)
    guild_ids: Annotated[list[int], NoDecode] = Field(
        default_factory=list
    )  # instant command sync; else global
    # Sync slash commands at start-up (only when they differ from what Discord already has).
    sync_commands: bool = True
    # Ask for the privileged MESSAGE CONTENT intent: needed to read plain follow-up messages in the bot's
    # threads. Without it people mention the bot in threads too (mentions and DMs always carry content).
    message_content: bool = True
    # Least seconds between two edits of one streaming message (Discord publishes no number; ~1/s
    # stays well inside the observed 5-per-5-s channel bucket).
    edit_interval: float = Field(1.0, ge=0.2, le=10.0)
    # Threads the bot opens are archived after this many minutes without activity.
    thread_archive_minutes: ThreadArchiveMinutes = 1440
    # Several `bot run` processes on one PostgreSQL database: each connects as one shard of
    # `shard_count`, so Discord sends each process only its share of the servers (DMs go to shard 0).
    shard_id: int | None = Field(None, ge=0)
    shard_count: int | None = Field(None, ge=1, le=1024)

    @model_validator(mode="after")
    def _shards_together(self) -> DiscordSettings:
        if (self.shard_id is None) != (self.shard_count is None):
            raise ValueError("set DISCORD_SHARD_ID and DISCORD_SHARD_COUNT together (or neither)")
        if self.shard_id is not None and self.shard_count is not None and self.shard_id >= self.shard_count:
            raise ValueError(
                f"DISCORD_SHARD_ID must be below DISCORD_SHARD_COUNT ({self.shard_count}): 0 to "
                f"{self.shard_count - 1}"
            )
        return self

    @field_validator("guild_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return [int(item) for item in value.split(",") if item.strip()]
            except ValueError:
                raise ValueError("comma-separated numeric guild ids, e.g. 123456789012345678") from None
        return value

    @property
    def enabled(self) -> bool:
        return self.bot_token is not None

    def secrets(self) -> list[str]:
        return [self.bot_token.get_secret_value()] if self.bot_token else []
