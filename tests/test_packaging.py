"""Packaging: the licence, `bot --version`, the changelog, every imported library declared, the lock files
covering what pyproject.toml asks for (and what this venv runs), and the Makefile's Python checks.

The Makefile is exercised with `make -n` (print, do not run) against fake interpreters in a temporary
folder, so nothing here builds a virtualenv or reaches a package index.
"""

from __future__ import annotations

import ast
import functools
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from bot.cli import main

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT: dict[str, Any] = PYPROJECT["project"]
OUR_PACKAGES = ("core", "bot", "adapters")
LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def runtime_requirements() -> list[Requirement]:
    return [Requirement(text) for text in PROJECT["dependencies"]]


def dev_requirements() -> list[Requirement]:
    return [Requirement(text) for text in PROJECT["optional-dependencies"]["dev"]]


def names(requirements: list[Requirement]) -> set[str]:
    return {canonicalize_name(requirement.name) for requirement in requirements}


# The licence


def test_license_is_mit_as_an_spdx_expression_with_its_file() -> None:
    assert PROJECT["license"] == "MIT"  # a string: the table form prints deprecation banners
    assert PROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 the contributors" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in text
    assert not any(c.startswith("License ::") for c in PROJECT.get("classifiers", []))  # PEP 639 forbids


def test_build_backend_understands_license_expressions() -> None:
    # setuptools reads `license = "MIT"` and `license-files` from 77.0 on; older ones reject or warn.
    (setuptools,) = [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    assert setuptools.name == "setuptools"
    assert not setuptools.specifier.contains(Version("76.9"))
    assert setuptools.specifier.contains(Version("77.0"))


# --version and the changelog


def test_bot_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"bot {PROJECT['version']}"
    assert metadata.version("teammate-bot") == PROJECT["version"]  # installed as pyproject.toml says


def test_changelog_has_unreleased_and_the_current_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", text, flags=re.MULTILINE)
    assert headings[0] == ("Unreleased", "")
    versions = {version: day for version, day in headings[1:]}
    assert versions.get(PROJECT["version"]), "the released version needs a dated section"
    assert "keepachangelog.com" in text


# Every third-party import is declared


def statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Every statement, nested ones too (imports are statements: no need to visit expressions)."""
    for statement in body:
        yield statement
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            for child in getattr(statement, field, []):
                if isinstance(child, ast.stmt):
                    yield from statements([child])
                else:  # an except handler or a match case holds statements
                    yield from statements(child.body)


@functools.cache
def third_party_imports(folder: str) -> dict[str, str]:
    """Top-level module -> a file importing it, for the absolute imports under `folder`."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in statements(ast.parse(path.read_text(), str(path)).body):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top not in sys.stdlib_module_names and top not in (*OUR_PACKAGES, "tests", "bench"):
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


_distributions_of = functools.cache(metadata.packages_distributions)


def undeclared(folders: tuple[str, ...], declared: set[str]) -> list[str]:
    providers = _distributions_of()
    problems = []
    for folder in folders:
        for module, where in third_party_imports(folder).items():
            distributions = {canonicalize_name(d) for d in providers.get(module, [])}
            if not distributions:
                problems.append(f"{module} (imported in {where}) comes from no installed distribution")
            elif not distributions & declared:
                problems.append(f"{module} (imported in {where}) is from {sorted(distributions)}: declare it")
    return problems


def test_every_library_our_code_imports_is_a_declared_dependency() -> None:
    assert undeclared(OUR_PACKAGES, names(runtime_requirements())) == []


def test_every_library_the_tests_and_benchmarks_import_is_declared() -> None:
    declared = names(runtime_requirements()) | names(dev_requirements())
    assert undeclared(("tests", "bench"), declared) == []


def test_the_import_scan_sees_a_dependency_only_other_packages_bring() -> None:
    # httpx2 arrives with anthropic too; the scan must still find that core/ imports it.
    assert "httpx2" in third_party_imports("core")
    assert "httpx2" in names(runtime_requirements())


# The lock files: requirements.lock (runtime, the Docker image) and requirements-dev.lock (the same pins
# plus the dev tools; what `make install` installs)

Pins = dict[str, list[tuple[Version, str]]]


@functools.cache
def lock_pins(path: Path = LOCK) -> Pins:
    """name -> [(pinned version, environment marker or "")]; one name may be pinned per marker."""
    pins: Pins = {}
    for line in path.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            name, version, marker = match.groups()
            pins.setdefault(canonicalize_name(name), []).append((Version(version), marker or ""))
    return pins


def applicable_pin(name: str, pins: Pins) -> Version | None:
    """The lock's version of `name` for this interpreter and platform (None: not locked for it)."""
    for version, marker in pins.get(canonicalize_name(name), []):
        if not marker or Marker(marker).evaluate():
            return version
    return None


def needed(requirement: Requirement, extras: set[str]) -> bool:
    """Whether a dependency applies here when its parent was installed with `extras`."""
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in extras | {""})


def closure(requirements: list[Requirement]) -> dict[str, Requirement]:
    """Every distribution `requirements` need here, by installed metadata, with the requirement that
    asked for it."""
    seen: dict[str, Requirement] = {}
    todo = [
        (requirement, set(requirement.extras)) for requirement in requirements if needed(requirement, set())
    ]
    while todo:
        requirement, extras = todo.pop()
        name = canonicalize_name(requirement.name)
        known = name in seen
        seen.setdefault(name, requirement)
        if known and not extras:
            continue
        for text in metadata.requires(requirement.name) or []:
            child = Requirement(text)
            if needed(child, extras):
                todo.append((child, set(child.extras)))
    return seen


# Each lock with what it must cover: the runtime dependencies, and those plus the dev tools.
EACH_LOCK = pytest.mark.parametrize(
    ("lock", "requirements"),
    [(LOCK, runtime_requirements()), (DEV_LOCK, runtime_requirements() + dev_requirements())],
    ids=["runtime", "dev"],
)


@EACH_LOCK
def test_lock_pins_every_declared_dependency_within_its_range(
    lock: Path, requirements: list[Requirement]
) -> None:
    pins = lock_pins(lock)
    for requirement in requirements:
        version = applicable_pin(requirement.name, pins)
        assert version is not None, f"{requirement.name} is not in {lock.name}: run `make lock`"
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{lock.name} pins {requirement.name}=={version}, outside {requirement}: run `make lock`"
        )


def test_dev_lock_runs_exactly_the_runtime_pins() -> None:
    # The tests run on what the image ships: every runtime pin is in the dev lock, at the same version.
    runtime, dev = lock_pins(LOCK), lock_pins(DEV_LOCK)
    assert {name: runtime[name] for name in runtime} == {name: dev.get(name) for name in runtime}
    assert set(dev) > set(runtime)


@EACH_LOCK
def test_lock_covers_the_whole_dependency_tree_at_the_versions_installed_here(
    lock: Path, requirements: list[Requirement]
) -> None:
    pins = lock_pins(lock)
    tree = closure(requirements)
    assert len(tree) > len(requirements)  # the walk reached transitive dependencies
    for name, requirement in sorted(tree.items()):
        version = applicable_pin(name, pins)
        assert version is not None, f"{name} (needed by {requirement}) is not in {lock.name}: run `make lock`"
        installed = Version(metadata.version(name))
        assert installed == version, (
            f"{name} is {installed} here but {version} in {lock.name}: run `make install`"
            " (or `make lock` if pyproject.toml changed)"
        )


@pytest.mark.parametrize("lock", [LOCK, DEV_LOCK], ids=["runtime", "dev"])
def test_lock_is_universal_hashed_and_made_by_make_lock(lock: Path) -> None:
    text = lock.read_text()
    assert "\n#    make lock\n" in text  # the header names the command that regenerates it
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    assert entries and all("--hash=sha256:" in entry for entry in entries), "every pin needs its hashes"
    pins = lock_pins(lock)
    assert "teammate-bot" not in pins and "-e " not in text  # the project itself is installed after
    assert sum(len(versions) for versions in pins.values()) == len(entries)
    # Universal: packages only other platforms or Pythons need are there too, behind markers.
    assert any(marker for versions in pins.values() for _, marker in versions)


# The Makefile


def make_variable(name: str) -> str:
    (value,) = re.findall(rf"^{name} :?= (.*)$", (ROOT / "Makefile").read_text(), flags=re.MULTILINE)
    return str(value).strip()


def test_makefile_minimum_python_is_requires_python() -> None:
    assert PROJECT["requires-python"] == f">={make_variable('MIN_PYTHON')}"


def test_makefile_installs_the_dev_lock_with_hashes_and_resolves_nothing() -> None:
    recipe = (ROOT / "Makefile").read_text().split("\n$(STAMP):", 1)[1].split("\n\n", 1)[0]
    lock = recipe.index("--require-hashes --no-deps -r $(DEV_LOCK)")
    assert lock < recipe.index("--no-deps -e .") < recipe.index("pip check")
    assert "-e '.[dev]'" not in recipe  # that would let pip pick versions of its own
    assert make_variable("LOCK") == LOCK.name
    assert make_variable("DEV_LOCK") == DEV_LOCK.name


MAKE = shutil.which("make")
needs_make = pytest.mark.skipif(MAKE is None, reason="make is not installed")


def fake_python(path: Path, version: str) -> Path:
    """A stand-in interpreter that reports `version` to the Makefile's probes."""
    major, minor = (int(part) for part in version.split(".")[:2])
    old = (major, minor) < (3, 11)
    path.write_text(
        "#!/bin/sh\n"
        f'case "$*" in *--version*) echo "Python {version}";; *sys.exit*) exit {int(old)};;'
        f" *) echo {major}.{minor};; esac\n"
    )
    path.chmod(0o755)
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder with the Makefile and the files its install step depends on; a venv made by this
    interpreter, installed after them (up to date)."""
    for name in ("Makefile", "pyproject.toml", LOCK.name, DEV_LOCK.name):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").symlink_to(sys.executable)
    stamp = tmp_path / ".venv" / ".installed"
    stamp.touch()
    later = (tmp_path / "Makefile").stat().st_mtime + 10
    os.utime(stamp, (later, later))
    return tmp_path


def dry_run(folder: Path, python: str | Path = sys.executable) -> subprocess.CompletedProcess[str]:
    assert MAKE is not None
    return subprocess.run(
        [MAKE, "--no-print-directory", "-n", "install", f"PYTHON={python}"],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "MAKEFLAGS": ""},
    )


@needs_make
def test_make_keeps_a_venv_made_by_the_same_python(project: Path) -> None:
    result = dry_run(project)
    assert result.returncode == 0, result.stderr
    assert "-m venv" not in result.stdout and "rm -rf" not in result.stdout


@needs_make
def test_make_rebuilds_a_venv_whose_python_no_longer_runs(project: Path) -> None:
    venv_python = project / ".venv" / "bin" / "python"
    venv_python.unlink()
    venv_python.symlink_to(project / "gone" / "python3.11")
    result = dry_run(project)
    assert result.returncode == 0, result.stderr
    assert "no longer runs" in result.stdout
    assert result.stdout.index("rm -rf .venv") < result.stdout.index("-m venv .venv")
    assert "--require-hashes --no-deps -r requirements-dev.lock" in result.stdout


@needs_make
def test_make_rebuilds_a_venv_made_by_another_python_version(project: Path) -> None:
    venv_python = project / ".venv" / "bin" / "python"
    venv_python.unlink()
    fake_python(venv_python, "3.99.0")
    result = dry_run(project)
    assert result.returncode == 0, result.stderr
    assert "another Python (3.99)" in result.stdout
    assert "rm -rf .venv" in result.stdout


@needs_make
def test_make_refuses_a_python_older_than_the_minimum(project: Path) -> None:
    old = fake_python(project / "python3.10", "3.10.2")
    assert MAKE is not None
    checked = subprocess.run(
        [MAKE, "--no-print-directory", "check-python", f"PYTHON={old}"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode != 0
    assert f"Python {make_variable('MIN_PYTHON')} or newer is needed" in checked.stderr
    assert "Python 3.10.2" in checked.stderr
    assert "make PYTHON=" in checked.stderr


@needs_make
def test_make_names_a_python_that_is_not_there(project: Path) -> None:
    assert MAKE is not None
    checked = subprocess.run(
        [MAKE, "--no-print-directory", "check-python", f"PYTHON={project / 'no-such-python'}"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode != 0
    assert "is not found" in checked.stderr
    assert "/bin/sh" not in checked.stderr  # the shell's own error is not shown
