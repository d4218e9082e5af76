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


# What an adapter may know of the core's events: the tool calls it is asked to draw. How a turn looks
# (text, notices, failures, replies) is the presenter's business (core/present.py), written once.
ADAPTER_EVENT_TYPES = {"ToolStarted", "ToolFinished"}


def test_adapters_leave_turn_events_to_the_presenter() -> None:
    for path in (ROOT / "adapters").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "core.events":
                names = {alias.name for alias in node.names}
                assert names <= ADAPTER_EVENT_TYPES, (path, names - ADAPTER_EVENT_TYPES)
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "isinstance":
                assert not any(
                    isinstance(arg, ast.Name) and arg.id in ADAPTER_EVENT_TYPES
                    for arg in ast.walk(node.args[1])
                ), path


def test_every_capability_is_read_by_the_presenter() -> None:
    from dataclasses import fields

    from core.surface import Capabilities

    presenter = (ROOT / "core" / "present.py").read_text(encoding="utf-8")
    unread = [f.name for f in fields(Capabilities) if f"_caps.{f.name}" not in presenter]
    assert not unread
