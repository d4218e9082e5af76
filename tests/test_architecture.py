"""The folder layout is the architecture: the core imports no platform library and no adapter."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLATFORM_LIBRARIES = {"slack_bolt", "slack_sdk", "discord", "telegram"}
PROVIDER_SDKS = {"anthropic", "openai"}


def imported_modules(folder: str) -> dict[Path, set[str]]:
    found: dict[Path, set[str]] = {}
    for path in (ROOT / folder).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[path] = names
    return found


def test_core_imports_no_platform_library_nor_the_app() -> None:
    for path, names in imported_modules("core").items():
        assert not names & (PLATFORM_LIBRARIES | {"adapters", "bot"}), path


def test_only_the_providers_package_talks_to_provider_sdks() -> None:
    for path, names in imported_modules("core").items():
        if "providers" not in path.parts:
            assert not names & PROVIDER_SDKS, path


def test_adapters_never_talk_to_a_provider() -> None:
    for path, names in imported_modules("adapters").items():
        assert not names & PROVIDER_SDKS, path
        assert "core.providers" not in path.read_text(encoding="utf-8"), path
