"""Settings: defaults, parsing and readable errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import SettingsError, load_settings
from core.models import ModelId, PriceTable, parse_model_id


def settings(**values: object):  # type: ignore[no-untyped-def]
    return load_settings(_env_file=None, **values)


def test_default_model_follows_the_configured_key() -> None:
    assert str(settings(anthropic_api_key="a").model) == "anthropic:claude-sonnet-5-5"
    assert str(settings(openai_api_key="o").model) == "openai:gpt-5.4-mini"
    local = settings(openai_base_url="http://localhost:11434/v1", bot_model="openai:llama3.1")
    assert local.model == ModelId("openai", "llama3.1")


def test_lists_are_comma_separated() -> None:
    s = settings(
        anthropic_api_key="a",
        openai_api_key="o",
        allowed_users="slack:U1, telegram:42,,",
        bot_models="openai:gpt-5.4",
    )
    assert s.allowed_users == ["slack:U1", "telegram:42"]
    assert s.offered_models == ("anthropic:claude-sonnet-5-5", "openai:gpt-5.4")


def test_errors_name_the_setting() -> None:
    with pytest.raises(SettingsError) as caught:
        settings(anthropic_api_key="a", bot_fallback_model="gpt", bot_pricing="{not json", log_level="LOUD")
    lines = caught.value.lines
    assert any(line.startswith("BOT_PRICING: not valid JSON") for line in lines), lines
    assert any(line.startswith("LOG_LEVEL:") for line in lines), lines
    assert len(lines) == 2  # "gpt" is a valid bare OpenAI name


def test_pricing_override() -> None:
    s = settings(anthropic_api_key="a", bot_pricing='{"openai:llama3.1": {"input": 0, "output": 0}}')
    table = PriceTable(s.prices)
    free = table.cost(
        parse_model_id("openai:llama3.1"), input_tokens=10, output_tokens=10, cache_read=0, cache_write=0
    )
    assert free == 0.0
    with pytest.raises(SettingsError, match="BOT_PRICING: openai:x: give at least input and output"):
        settings(anthropic_api_key="a", bot_pricing='{"openai:x": {"input": 1}}')


def test_secrets_are_hidden_in_repr() -> None:
    s = settings(anthropic_api_key="sk-ant-very-secret")
    assert "sk-ant-very-secret" not in repr(s)
    assert s.secrets() == ["sk-ant-very-secret"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("anthropic:claude-opus-5", "anthropic:claude-opus-5"),
        ("OpenAI:gpt-5.4", "openai:gpt-5.4"),
        ("claude-haiku-5-5", "anthropic:claude-haiku-5-5"),
        ("o3", "openai:o3"),
    ],
)
def test_model_ids(raw: str, expected: str) -> None:
    assert str(parse_model_id(raw)) == expected


def test_dated_model_uses_base_price_and_unknown_is_none() -> None:
    table = PriceTable()
    dated = table.price_of(parse_model_id("anthropic:claude-sonnet-4-5-20250929"))
    assert dated is not None and dated.input == 3.0
    assert table.price_of(parse_model_id("openai:my-own-model")) is None


def test_env_example_with_one_key_is_a_working_configuration(tmp_path: Path) -> None:
    example = (Path(__file__).resolve().parent.parent / ".env.example").read_text(encoding="utf-8")
    env_file = tmp_path / ".env"
    env_file.write_text(
        example.replace("ANTHROPIC_API_KEY=\n", "ANTHROPIC_API_KEY=sk-ant-x\n"), encoding="utf-8"
    )
    loaded = load_settings(_env_file=str(env_file))
    assert str(loaded.model) == "anthropic:claude-sonnet-5-5"
    assert loaded.openai_api_key is None  # `OPENAI_API_KEY=` (blank) is not a key
    assert not (loaded.slack.enabled or loaded.telegram.enabled or loaded.discord.enabled)


def test_blank_keys_mean_no_llm(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("ANTHROPIC_API_KEY=\nOPENAI_API_KEY=\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="no LLM configured"):
        load_settings(_env_file=str(env_file))
