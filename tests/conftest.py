"""Shared pytest fixtures. Each fixture is self-contained; append new ones below."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings, load_settings
from core.storage import Store, open_store
from tests.fakes.llm_server import FakeLLMServer
from tests.pgserver import INSTALL_HINT, SKIP_POSTGRES, PostgresServer


@pytest.fixture
async def llm_server() -> AsyncIterator[FakeLLMServer]:
    """A fake Anthropic + OpenAI streaming API on 127.0.0.1 (see tests/fakes/llm_server.py)."""
    server = FakeLLMServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


# --- The whole core, wired as `bot` wires it, against the fake LLM server ----------------------------

_SETTING_VARS = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "DATABASE_URL",
    "LOG_LEVEL",
    "TOOL_FETCH_ALLOW_PRIVATE",
)


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never see the developer's environment or .env file."""
    import os

    for name in list(os.environ):
        if name in _SETTING_VARS or name.startswith(("BOT_", "ALLOWED_", "ADMIN_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def settings_for(llm_server: FakeLLMServer, tmp_path: Path) -> Callable[..., Settings]:
    """Settings pointing both providers at the fake server, with a fresh SQLite file."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "anthropic_api_key": "sk-ant-test-secret-key",
            "anthropic_base_url": llm_server.anthropic_base_url,
            "openai_api_key": "sk-openai-test-secret-key",
            "openai_base_url": llm_server.openai_base_url,
            "database_url": f"sqlite:///{tmp_path / 'bot.db'}",
            "bot_model": "anthropic:claude-sonnet-5-5",
            "bot_retry_attempts": 2,
        }
        values.update(overrides)
        return load_settings(_env_file=None, **values)

    return make


# --- PostgreSQL ---------------------------------------------------------------------------------------


def started_postgres(*, private: bool = False) -> PostgresServer:
    """A started server, or a skip (BOT_TEST_POSTGRES=skip) or a failure that says what to install."""
    if SKIP_POSTGRES:
        pytest.skip("BOT_TEST_POSTGRES=skip: PostgreSQL tests skipped on request")
    server = PostgresServer(private=private)
    try:
        server.start()
    except (RuntimeError, OSError) as error:
        pytest.fail(f"cannot start PostgreSQL for the tests: {error}\n{INSTALL_HINT}", pytrace=False)
    return server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One private PostgreSQL server for the whole run (see tests/pgserver.py)."""
    server = started_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    """A server of the test's own, for tests that stop and restart it."""
    server = started_postgres(private=True)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the test server, dropped afterwards."""
    url = postgres_server.new_database()
    try:
        yield url
    finally:
        postgres_server.drop_database(url)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database on each backend: the test runs once on a SQLite file, once on PostgreSQL."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'bot.db'}"


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """An opened store on `database_url` (test modules with their own `store` fixture override it)."""
    opened = open_store(database_url)
    await opened.open()
    yield opened
    await opened.close()
