"""A throwaway PostgreSQL server for the tests: initdb into a temporary directory, listen on a free port
on 127.0.0.1, one fresh database per test.

The server binaries come from the OS package (`apt-get install postgresql`; `.ci/run` installs it). If
TEST_DATABASE_URL is set, that server is used instead (its user must be allowed to CREATE DATABASE).
Nothing is skipped silently: without binaries or a URL the PostgreSQL tests fail and say what to install,
unless BOT_TEST_POSTGRES=skip says to skip them (reported as skipped by pytest).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg

from tests.ports import free_port

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, postgres) not found: install them (Debian/Ubuntu: "
    "`apt-get install postgresql`), or set TEST_DATABASE_URL=postgresql://user@host:port/db for an "
    "existing server, or BOT_TEST_POSTGRES=skip to skip the PostgreSQL tests"
)


# Read at import, before any test fixture clears the environment.
EXISTING_SERVER_URL = os.environ.get("TEST_DATABASE_URL", "")
SKIP_POSTGRES = os.environ.get("BOT_TEST_POSTGRES", "").lower() == "skip"


def find_bindir() -> Path | None:
    """Where initdb and postgres live (PATH first, then Debian's versioned directories)."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key, reverse=True)
    return Path(candidates[0]).parent if candidates else None


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.parent.name
    return tuple(int(part) for part in version.split(".") if part.isdigit())


class PostgresServer:
    """A private cluster owned by this test run, or an existing server named by TEST_DATABASE_URL."""

    def __init__(self, *, private: bool = False) -> None:
        """`private`: always start an own server (for tests that stop and restart it)."""
        self._root: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._command: list[str] = []
        self._user: str | None = None
        self._port = 0
        self._names = itertools.count(1)
        self._log = Path(os.devnull)
        self.admin_url = "" if private else EXISTING_SERVER_URL

    def start(self) -> None:
        if self.admin_url:
            return
        bindir = find_bindir()
        if bindir is None:
            raise RuntimeError(INSTALL_HINT)
        self._root = Path(tempfile.mkdtemp(prefix="bot-pg-"))
        data, sockets = self._root / "data", self._root / "sock"
        sockets.mkdir()
        user: str | None = None
        if os.geteuid() == 0:  # postgres refuses to run as root: use the package's service user
            user = "postgres"
            entry = pwd.getpwnam(user)
            for path in (self._root, sockets):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-U", "bot", "-A", "trust", "--no-sync"],
            check=True,
            capture_output=True,
            user=user,
        )
        self._port = port = free_port()
        self._log = self._root / "postgres.log"
        self._user = user
        self._command = [
            *(str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(sockets)),
            *("-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"),
            *("-c", "synchronous_commit=off", "-c", "full_page_writes=off"),
            *("-c", "max_connections=300"),
        ]
        self._launch()
        self.admin_url = f"postgresql://bot@127.0.0.1:{port}/postgres"

    def _launch(self) -> None:
        with open(self._log, "ab") as log:
            self._process = subprocess.Popen(
                self._command, stdout=log, stderr=subprocess.STDOUT, user=self._user
            )
        self._wait_ready(self._port)

    def shut_down(self) -> None:
        """Stop the server (PostgreSQL's fast shutdown: clients are disconnected), keeping its data."""
        if self._process is None:
            return
        # SIGINT is PostgreSQL's "fast" shutdown; SIGTERM ("smart") would wait for every client.
        self._process.send_signal(signal.SIGINT)
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def start_again(self) -> None:
        """Start a server stopped by `shut_down` on the same data and port."""
        assert self._command, "only a server this object started can be started again"
        self._launch()

    def _wait_ready(self, port: int, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"postgres exited at start: {self._log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("postgres did not start listening within 30 s")

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL. Synchronous (its own loop on a side thread), so
        fixtures of any kind can ask for one."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self._admin(f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}" TEMPLATE template0')
        base, _, _ = self.admin_url.rpartition("/")
        return f"{base}/{name}"

    def drop_database(self, url: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{url.rpartition("/")[2]}" WITH (FORCE)')

    async def _connect_admin(self, timeout_s: float = 30.0) -> asyncpg.Connection:
        """Connect, waiting out "the database system is starting up" (it accepts before it is ready)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return await asyncpg.connect(self.admin_url)
            except asyncpg.CannotConnectNowError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)

    def _admin(self, *statements: str) -> None:
        async def run() -> None:
            admin = await self._connect_admin()
            try:
                for statement in statements:
                    await admin.execute(statement)
            finally:
                await admin.close()

        with concurrent.futures.ThreadPoolExecutor(1) as side:
            side.submit(asyncio.run, run()).result()

    def stop(self) -> None:
        self.shut_down()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
