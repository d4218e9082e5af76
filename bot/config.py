"""Settings: one pydantic-settings model, read from the environment and `.env`.

A bad value becomes one readable line naming the setting (see `load_settings`), not a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from adapters.discord.settings import DiscordSettings
from adapters.slack.settings import SlackSettings
from adapters.telegram.settings import TelegramSettings
from core.inbound import DEFAULT_MAX_MESSAGE_CHARS
from core.models import ModelId, Price, parse_model_id
from core.storage import is_postgres_url, postgres_dsn_from_url, sqlite_path_from_url
from core.storage.sqlite import MEMORY
from core.tools.policy import ToolPolicy

CommaList = Annotated[list[str], NoDecode]

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful AI teammate in a team chat. Answer clearly and concisely, use Markdown sparingly, "
    "and use your tools when they help (current time, calculations, reading a web page). "
    "Say so when you are unsure."
)
DEFAULT_ANTHROPIC_MODEL = "anthropic:claude-sonnet-5-5"
DEFAULT_OPENAI_MODEL = "openai:gpt-5.4-mini"
# What a provider's models need before they can answer (said in the config error).
PROVIDER_CREDENTIALS = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY (or OPENAI_BASE_URL)"}


class SettingsError(Exception):
    """Configuration problems, one readable line each."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # LLM providers. The base URLs are the SDKs' own variables; set OPENAI_BASE_URL for Ollama/vLLM/llama.cpp.
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str | None = None
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None

    bot_model: str | None = None  # provider:model; default depends on which key is set
    bot_fallback_model: str | None = None
    bot_models: CommaList = Field(default_factory=list)  # offered by `model` (autocomplete on Discord)
    bot_system_prompt: str = DEFAULT_SYSTEM_PROMPT
    bot_max_steps: int = Field(8, ge=1, le=50)
    bot_max_output_tokens: int = Field(4096, ge=64, le=128_000)
    bot_context_tokens: int | None = Field(None, ge=2_000)
    # Longer inbound messages are cut to this many characters (the user is told); commands too.
    bot_max_message_chars: int = Field(DEFAULT_MAX_MESSAGE_CHARS, ge=100, le=1_000_000)
    bot_retry_attempts: int = Field(3, ge=1, le=10)
    bot_provider_timeout: float = Field(120.0, gt=0)
    bot_pricing: str = ""  # JSON: {"openai:my-model": {"input": 1, "output": 2, ...}} USD per million tokens

    database_url: str = "sqlite:///data/bot.db"  # or postgresql://user:password@host:5432/dbname
    database_pool_size: int = Field(10, ge=1, le=200)  # PostgreSQL connections per process (+1 fleet)

    allowed_users: CommaList = Field(default_factory=list)
    allowed_channels: CommaList = Field(default_factory=list)
    admin_users: CommaList = Field(default_factory=list)

    tool_fetch_allow_private: bool = False
    # Tool approvals: which calls run on their own, wait for a person, or never run (core/tools/policy.py).
    bot_tool_policy: str = ""  # e.g. "fetch_url=ask, post_message@slack:C0123=allow, *@telegram:-1001=deny"
    bot_approvers: Literal["asker_or_admins", "asker", "admins"] = "asker_or_admins"
    bot_approval_timeout_s: float = Field(600.0, ge=10, le=86_400)
    bot_answer_buttons: bool = True  # 👍 / 👎 / regenerate under every answer
    log_level: str = "INFO"
    log_format: str = "text"  # text (human-readable) or json (one object per line)

    # Daily usage report (posted by `bot run`'s scheduler to each destination that is set).
    report_time: str = "09:00"  # HH:MM in REPORT_TIMEZONE; the report covers the previous day
    report_timezone: str = "UTC"  # IANA zone; also decides which day a turn at 23:30 belongs to
    report_slack_channel: str | None = None  # channel id, e.g. C0123ABCD
    report_discord_channel: str | None = None  # channel id
    report_telegram_chat: str | None = None  # chat id, e.g. -1001234567890
    report_post_empty: bool = False  # also post days with no activity

    # Budgets (USD per day, in REPORT_TIMEZONE days). None = no cap.
    budget_daily_user_usd: float | None = Field(None, gt=0)
    budget_daily_total_usd: float | None = Field(None, gt=0)
    budget_admins_exempt: bool = True
    bot_cost_footer: bool = False  # a short tokens/cost line under each answer

    # The bot's HTTP server (health, Slack HTTP events, Telegram webhook), started by `bot run`.
    http_host: str = "0.0.0.0"
    http_port: int = Field(8080, ge=0, le=65535)
    # On SIGTERM: seconds running turns get to finish before they are stopped.
    bot_shutdown_grace: float = Field(30.0, ge=0, le=3600)

    # One section per platform adapter; each reads its own prefix (SLACK_*, TELEGRAM_*, DISCORD_*).
    slack: SlackSettings = Field(default_factory=SlackSettings)
    telegram: TelegramSettings = Field(default_factory=TelegramSettings)
    discord: DiscordSettings = Field(default_factory=DiscordSettings)

    @field_validator("bot_models", "allowed_users", "allowed_channels", "admin_users", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator(
        "bot_model",
        "bot_fallback_model",
        "anthropic_api_key",
        "openai_api_key",
        "anthropic_base_url",
        "openai_base_url",
        mode="before",
    )
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:  # `KEY=` in .env means "not set"
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("bot_model", "bot_fallback_model", "bot_models")
    @classmethod
    def _valid_model(cls, value: Any) -> Any:
        for item in value if isinstance(value, list) else [value]:
            if item is not None:
                parse_model_id(item)  # ValueError -> readable settings error
        return value

    @field_validator("bot_pricing")
    @classmethod
    def _valid_pricing(cls, value: str) -> str:
        if value.strip():
            parse_pricing(value)
        return value

    @field_validator("bot_tool_policy")
    @classmethod
    def _valid_policy(cls, value: str) -> str:
        ToolPolicy.parse(value)  # ValueError names the entry that is wrong
        return value

    @property
    def tool_policy(self) -> ToolPolicy:
        return ToolPolicy.parse(self.bot_tool_policy)

    @field_validator("report_time")
    @classmethod
    def _valid_time(cls, value: str) -> str:
        hours, sep, minutes = value.strip().partition(":")
        if not (sep and hours.isdigit() and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60):
            raise ValueError("use HH:MM, e.g. 09:00")
        return f"{int(hours):02d}:{int(minutes):02d}"

    @field_validator("report_timezone")
    @classmethod
    def _valid_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA timezone {value!r}, e.g. Europe/Berlin") from None
        return value

    @field_validator(
        "report_slack_channel",
        "report_discord_channel",
        "report_telegram_chat",
        "budget_daily_user_usd",
        "budget_daily_total_usd",
        mode="before",
    )
    @classmethod
    def _blank_optional(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level")
    @classmethod
    def _valid_level(cls, value: str) -> str:
        level = value.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("use DEBUG, INFO, WARNING or ERROR")
        return level

    @field_validator("log_format")
    @classmethod
    def _valid_format(cls, value: str) -> str:
        log_format = value.strip().lower()
        if log_format not in ("text", "json"):
            raise ValueError("use text or json")
        return log_format

    @model_validator(mode="after")
    def _a_model_is_usable(self) -> Settings:
        if not self.has_llm:
            raise ValueError(
                "no LLM configured: set ANTHROPIC_API_KEY or OPENAI_API_KEY (or OPENAI_BASE_URL)"
            )
        return self

    @property
    def has_llm(self) -> bool:
        return any(self.provider_configured(provider) for provider in PROVIDER_CREDENTIALS)

    def provider_configured(self, provider: str) -> bool:
        """Mirrors ProviderPool.configured: a custom OpenAI base URL (Ollama, vLLM) needs no key."""
        if provider == "anthropic":
            return bool(self.anthropic_api_key)
        if provider == "openai":
            return bool(self.openai_api_key or self.openai_base_url)
        return False

    @property
    def model(self) -> ModelId:
        if self.bot_model:
            return parse_model_id(self.bot_model)
        return parse_model_id(DEFAULT_ANTHROPIC_MODEL if self.anthropic_api_key else DEFAULT_OPENAI_MODEL)

    @property
    def fallback_model(self) -> ModelId | None:
        return parse_model_id(self.bot_fallback_model) if self.bot_fallback_model else None

    @property
    def offered_models(self) -> tuple[str, ...]:
        models = [str(self.model)]
        if self.fallback_model:
            models.append(str(self.fallback_model))
        models += [str(parse_model_id(m)) for m in self.bot_models]
        return tuple(dict.fromkeys(models))

    @property
    def prices(self) -> dict[str, Price]:
        return parse_pricing(self.bot_pricing) if self.bot_pricing.strip() else {}

    def secrets(self) -> list[str]:
        """Every secret value, for log redaction."""
        values = [self.anthropic_api_key, self.openai_api_key]
        own = [v.get_secret_value() for v in values if v and v.get_secret_value()]
        return own + self.slack.secrets() + self.telegram.secrets() + self.discord.secrets()


def parse_pricing(raw: str) -> dict[str, Price]:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid JSON ({error.msg})") from None
    if not isinstance(data, dict):
        raise ValueError('expected an object like {"openai:my-model": {"input": 1.0, "output": 2.0}}')
    prices: dict[str, Price] = {}
    for model, entry in data.items():
        parse_model_id(model)
        if not isinstance(entry, dict) or "input" not in entry or "output" not in entry:
            raise ValueError(f"{model}: give at least input and output prices (USD per million tokens)")
        try:
            inp, out = float(entry["input"]), float(entry["output"])
            prices[model] = Price(
                inp, out, float(entry.get("cache_read", inp)), float(entry.get("cache_write", inp))
            )
        except (TypeError, ValueError):
            raise ValueError(f"{model}: prices must be numbers") from None
    return prices


def _error_line(error: Any, prefix: str = "") -> str:
    parts = [str(part) for part in error.get("loc", ()) if part != "__root__" and not isinstance(part, int)]
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    if not parts:
        return f"{prefix.rstrip('_')}: {message}" if prefix else message
    return f"{prefix}{'_'.join(parts).upper()}: {message}"


_SECTIONS: dict[str, tuple[type[BaseSettings], str]] = {
    "slack": (SlackSettings, "SLACK_"),
    "telegram": (TelegramSettings, "TELEGRAM_"),
    "discord": (DiscordSettings, "DISCORD_"),
}


class _LogFormatOnly(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")
    log_format: str = "text"


def log_format_hint() -> str:
    """LOG_FORMAT when the settings as a whole failed to load, so config errors follow it too."""
    try:
        return "json" if _LogFormatOnly().log_format.strip().lower() == "json" else "text"
    except Exception:  # an unreadable .env: the settings error says what is wrong
        return "text"


def load_settings(**overrides: Any) -> Settings:
    """Settings from env and .env; raises SettingsError with one line per bad value (all sections)."""
    lines: list[str] = []
    env_file = overrides.get("_env_file", ".env")
    for name, (section, prefix) in _SECTIONS.items():
        if name in overrides:
            continue
        try:
            overrides[name] = section(_env_file=env_file)
        except ValidationError as error:
            lines += [_error_line(e, prefix) for e in error.errors(include_input=False)]
            overrides[name] = section.model_construct()  # reported once above, not again below
    try:
        settings = Settings(**overrides)
    except ValidationError as error:
        lines += [_error_line(e) for e in error.errors(include_input=False)]
    else:
        lines += model_problems(settings) + database_problems(settings.database_url)
    if lines:
        raise SettingsError(lines)
    return settings


def model_problems(settings: Settings) -> list[str]:
    """Configured models whose provider has no credentials: refused at start, not on every message."""
    configured = [p for p in PROVIDER_CREDENTIALS if settings.provider_configured(p)]
    named = [("BOT_MODEL", settings.bot_model), ("BOT_FALLBACK_MODEL", settings.bot_fallback_model)]
    named += [("BOT_MODELS", model) for model in settings.bot_models]
    lines = []
    for setting, raw in named:
        if raw is None:
            continue
        model = parse_model_id(raw)  # already validated
        if not settings.provider_configured(model.provider):
            others = " or ".join(f"{p}:..." for p in configured)
            lines.append(
                f"{setting}: {model} needs {PROVIDER_CREDENTIALS[model.provider]}; set it, "
                f"or choose a model of a configured provider ({others})"
            )
    return lines


def database_problems(database_url: str) -> list[str]:
    """What makes DATABASE_URL unusable, found before anything opens it; never quotes credentials."""
    try:
        if is_postgres_url(database_url):
            return _postgres_problems(postgres_dsn_from_url(database_url))
        path = sqlite_path_from_url(database_url)
    except ValueError as error:
        return [str(error)]
    return [] if path == MEMORY else _sqlite_path_problems(path)


def _postgres_problems(dsn: str) -> list[str]:
    try:
        hosts = urlsplit(dsn).netloc.rpartition("@")[2]
    except ValueError:  # e.g. an unclosed [ of an IPv6 address
        return [f"DATABASE_URL: the host part of the PostgreSQL URL is malformed; {_PG_FORM}"]
    for spec in hosts.split(","):  # asyncpg takes host1:5432,host2:5433
        port = spec.rpartition("]")[2] if spec.startswith("[") else spec
        port = port.rpartition(":")[2] if ":" in port else ""
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            # Not quoted: with a mistyped URL the "port" can be part of the password.
            return [f"DATABASE_URL: the port in the PostgreSQL URL is not a number 1-65535; {_PG_FORM}"]
    return []


_PG_FORM = (
    "write postgresql://user:password@host:5432/dbname "
    "(percent-encode : / @ # in the password, e.g. @ as %40)"
)


def _sqlite_path_problems(path: str) -> list[str]:
    """A path that is a directory, or lies under a regular file, can never be a database file."""
    file = Path(path)
    try:
        if file.is_dir():
            return [
                f"DATABASE_URL: {path} is a directory; name a file in it, "
                f"e.g. sqlite:///{path.rstrip('/')}/bot.db"
            ]
        for parent in file.parents:
            if parent.exists():
                if not parent.is_dir():
                    return [
                        f"DATABASE_URL: {parent} is a file, so no database can be created under it; "
                        "choose another path, e.g. sqlite:///data/bot.db"
                    ]
                break
    except OSError:  # e.g. no permission to look: opening the store says what is wrong
        return []
    return []
