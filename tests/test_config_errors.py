"""Bad settings end in one `config error:` line naming the setting and the fix, never a traceback.

`bot.cli.main` runs in-process (a subprocess costs seconds); its logging set-up is undone after each test.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.cli import EXIT_CONFIG, main
from bot.config import SettingsError, load_settings
from core.storage import SQLiteStore, StoreUnavailableError
from tests.corekit import restored_logging

PASSWORD = "hunter2-very-secret"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Only what a test sets: no platform tokens or log settings from the developer's shell."""
    for name in list(os.environ):
        if name.startswith(("SLACK_", "TELEGRAM_", "DISCORD_", "HTTP_", "LOG_", "REPORT_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-config-test")
    with restored_logging():  # `main` rewires logging: put it back for the next test
        yield


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    code = main(list(args))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err.strip().splitlines()


def test_database_url_that_is_a_directory(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{folder}")
    code, lines = run_cli(capsys, "chat")
    assert code == EXIT_CONFIG
    assert lines == [
        f"config error: DATABASE_URL: {folder} is a directory; name a file in it, e.g. sqlite:///{folder}/bot.db"
    ]


def test_sqlite_path_under_a_regular_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'notes.txt' / 'db' / 'bot.db'}")
    code, lines = run_cli(capsys, "report")
    assert code == EXIT_CONFIG and len(lines) == 1
    assert lines[0].startswith(f"config error: DATABASE_URL: {tmp_path / 'notes.txt'} is a file")
    assert "choose another path" in lines[0]


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://bot:{PASSWORD}@db:port/bot",
        f"postgresql://bot:{PASSWORD}@db:99999/bot",
        f"postgresql://bot:{PASSWORD}/bot",  # the "@host" forgotten: the password reads as the port
        f"postgresql://bot:{PASSWORD}@db1:5432,db2:x/bot",
    ],
)
def test_postgres_url_with_a_bad_port(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    code, lines = run_cli(capsys, "chat")
    assert code == EXIT_CONFIG and len(lines) == 1
    assert lines[0].startswith("config error: DATABASE_URL: the port in the PostgreSQL URL is not a number")
    assert "postgresql://user:password@host:5432/dbname" in lines[0]
    assert PASSWORD not in lines[0]


def test_http_port_in_use_at_bot_run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("HTTP_HOST", "127.0.0.1")
        monkeypatch.setenv("HTTP_PORT", str(port))
        monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'bot.db'}")
        # A platform is configured, so `bot run` serves; it never reaches Telegram (nothing listens).
        monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:config-test-token")
        monkeypatch.setenv("TELEGRAM_API_URL", "http://127.0.0.1:9/bot")
        code, lines = run_cli(capsys, "run")
    assert code == EXIT_CONFIG
    assert lines == [
        f"config error: HTTP_PORT: port {port} on 127.0.0.1 is already in use (another bot or program is "
        "listening); stop it or set HTTP_PORT to a free port"
    ]  # and no "Serving …" banner: it comes once the port is ours


def test_model_without_credentials_is_refused_at_start(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOT_MODEL", "openai:gpt-5.4")
    monkeypatch.setenv("BOT_FALLBACK_MODEL", "gpt-5.4-mini")
    code, lines = run_cli(capsys, "chat")
    assert code == EXIT_CONFIG
    assert lines == [
        "config error: BOT_MODEL: openai:gpt-5.4 needs OPENAI_API_KEY (or OPENAI_BASE_URL); set it, "
        "or choose a model of a configured provider (anthropic:...)",
        "config error: BOT_FALLBACK_MODEL: openai:gpt-5.4-mini needs OPENAI_API_KEY (or OPENAI_BASE_URL); "
        "set it, or choose a model of a configured provider (anthropic:...)",
    ]


def test_model_of_a_keyless_local_server_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    ollama = "http://localhost:11434/v1"
    local = load_settings(_env_file=None, openai_base_url=ollama, bot_model="openai:qwen3")
    assert str(local.model) == "openai:qwen3"
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None, openai_base_url=ollama, bot_fallback_model="claude-haiku-5-5")
    assert caught.value.lines == [
        "BOT_FALLBACK_MODEL: anthropic:claude-haiku-5-5 needs ANTHROPIC_API_KEY; set it, "
        "or choose a model of a configured provider (openai:...)"
    ]


def test_config_errors_are_json_with_log_format_json(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOG_FORMAT", "json")
    monkeypatch.setenv("BOT_MAX_STEPS", "lots")
    code, lines = run_cli(capsys, "chat")
    assert code == EXIT_CONFIG and len(lines) == 1
    record = json.loads(lines[0])
    assert record["level"] == "ERROR"
    assert record["message"].startswith("config error: BOT_MAX_STEPS:")


async def test_unopenable_sqlite_file_is_a_readable_store_error(tmp_path: Path) -> None:
    # What the settings check cannot see: a file that is not a database. Opening says so in one line.
    impostor = tmp_path / "bot.db"
    impostor.write_text("this is a text file, not SQLite\n" * 10, encoding="utf-8")
    with pytest.raises(
        StoreUnavailableError, match=r"cannot open the SQLite database .*bot\.db: file is not a"
    ):
        await SQLiteStore(str(impostor)).open()


async def test_postgres_dsn_asyncpg_rejects_is_a_store_error_without_the_password() -> None:
    from core.storage.postgres import PostgresStore

    store = PostgresStore(f"postgresql://bot:{PASSWORD}@localhost:{PASSWORD}/bot")  # past the settings check
    with pytest.raises(StoreUnavailableError) as caught:
        await store.open()
    assert str(caught.value).startswith("DATABASE_URL: the PostgreSQL URL cannot be parsed")
    assert PASSWORD not in str(caught.value)
