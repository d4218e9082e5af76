# `make run` and `make test` set everything up (a virtualenv in .venv) on a fresh machine.
# Another interpreter: `make PYTHON=python3.12 test` (a .venv made by a different one is rebuilt).
PYTHON ?= python3
# The oldest Python the project supports: keep it equal to requires-python in pyproject.toml.
MIN_PYTHON := 3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock

# "major.minor" of PYTHON and of the venv's own python (empty when it does not run). A .venv whose python
# is gone (e.g. removed by an upgrade) or is another version than PYTHON is deleted and made again.
PY_VERSION := -c 'import sys; print("%d.%d" % sys.version_info[:2])'
WANT_PYTHON := $(shell $(PYTHON) $(PY_VERSION) 2>/dev/null)
HAVE_PYTHON := $(shell $(BIN)/python $(PY_VERSION) 2>/dev/null)
STALE_VENV := $(if $(wildcard $(VENV)),$(if $(filter-out $(WANT_PYTHON),$(HAVE_PYTHON))$(if $(HAVE_PYTHON),,gone),stale))
CHECK_PYTHON := -c 'import sys; sys.exit(sys.version_info[:2] < tuple(int(p) for p in "$(MIN_PYTHON)".split(".")))'

.PHONY: install run chat test lint typecheck unit bench lock clean check-python FORCE

check-python:
	@$(PYTHON) $(CHECK_PYTHON) 2>/dev/null || { \
		echo "make: Python $(MIN_PYTHON) or newer is needed, and '$(PYTHON)' is" \
			"$$($(PYTHON) --version 2>/dev/null || echo 'not found')." \
			"Install one and point make at it, e.g. make PYTHON=python$(MIN_PYTHON) test" >&2; \
		exit 1; }

# Every dependency comes pinned and hashed from the dev lock (the runtime pins in it are the Docker image's
# requirements.lock), then the project itself, editable; nothing is resolved at install time.
$(STAMP): pyproject.toml $(LOCK) $(DEV_LOCK) $(if $(STALE_VENV),FORCE) | check-python
	$(if $(STALE_VENV),@echo "make: $(VENV) was made by another Python ($(or $(HAVE_PYTHON),its python no longer runs)); making it again with $(PYTHON) ($(WANT_PYTHON))")
	$(if $(STALE_VENV),rm -rf $(VENV))
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(DEV_LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@$(BIN)/python -m pip check >/dev/null || { $(BIN)/python -m pip check; \
		echo "make: the lock files do not satisfy pyproject.toml: run make lock" >&2; exit 1; }
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/bot run

chat: install
	$(BIN)/bot chat

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint deploy/Dockerfile
	$(BIN)/kubernetes-validate --strict --quiet deploy/k8s/*.yaml deploy/k8s/postgres/*.yaml

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest

test: lint typecheck unit

bench: install
	$(BIN)/python -m bench.core_overhead

# Re-resolve the locks after a change to the dependencies in pyproject.toml: pins already in them are kept;
# `make lock UPGRADE=1` moves every pin to the newest release the ranges allow. Both are universal (every
# platform, Python $(MIN_PYTHON)+) with hashes for every file of each pinned release; the dev lock adds the
# dev tools to exactly the runtime pins. Needs only a python in $(VENV) (not a working install: the locks
# are what repairs one), then `make install` installs what changed.
UV_COMPILE = $(BIN)/uv pip compile pyproject.toml --universal --python-version $(MIN_PYTHON) --generate-hashes \
	--custom-compile-command "make lock" $(if $(UPGRADE),--upgrade) --quiet

lock: | check-python
	$(BIN)/python -c '' 2>/dev/null || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet 'uv>=0.5'
	$(UV_COMPILE) -o $(LOCK)
	$(UV_COMPILE) --extra dev -c $(LOCK) -o $(DEV_LOCK)

FORCE:

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
