"""PostgreSQL for the reliability tests: a throw-away cluster of a test's own (so it may be stopped
and started again; the machine's shared server never is), and ``vote-ledger serve`` nodes on a
database URL.

PostgreSQL refuses to run as root, so the cluster's folder is given to the ``postgres`` user and
its programs run through ``runuser``. Where that cannot be done the test is skipped, saying why;
with ``VOTE_LEDGER_REQUIRE_POSTGRES=1`` it fails instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import asyncpg
import pytest

from tests.postgres import REQUIRED, database_url
from tests.reliability.helpers import Server, free_port, spawn_server, wait_ready

PG_BIN = Path(os.environ.get("VOTE_LEDGER_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
OS_USER = "postgres"  # the system user the cluster runs as
START_TIMEOUT = 60  # seconds pg_ctl waits for the server to start or stop


class ClusterError(Exception):
    """The throw-away cluster could not be made, started or stopped."""


def _skip_or_fail(reason: str) -> NoReturn:
    if REQUIRED:
        pytest.fail(f"{reason}, and VOTE_LEDGER_REQUIRE_POSTGRES=1 says PostgreSQL tests must run")
    pytest.skip(reason)


def _as_postgres(*args: str, timeout: float = START_TIMEOUT + 30) -> subprocess.CompletedProcess[str]:
    command = list(args) if os.geteuid() != 0 else ["runuser", "-u", OS_USER, "--", *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        env={**os.environ, "LC_ALL": "C"}, cwd="/",
    )


@dataclass
class Cluster:
    """A PostgreSQL cluster in a temporary folder, on 127.0.0.1 and a free port (trust auth)."""

    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        """The URL of the cluster's ``postgres`` database (for administration)."""
        return f"postgresql://{OS_USER}@127.0.0.1:{self.port}/postgres"

    def database(self, name: str) -> str:
        return database_url(name, self.url)

    def _ctl(self, *args: str) -> None:
        result = _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-t", str(START_TIMEOUT), *args)
        if result.returncode != 0:
            raise ClusterError(f"pg_ctl {' '.join(args)}: {result.stdout}{result.stderr}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._ctl("-o", options, "-l", str(self.root / "server.log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: clients are disconnected and the server shuts down cleanly; ``immediate``:
        every server process quits at once, and the next start recovers from the WAL."""
        self._ctl("-m", mode, "-w", "stop")

    def running(self) -> bool:
        status = _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "status", timeout=30)
        return status.returncode == 0

    def create_database(self, name: str) -> str:
        async def create() -> None:
            conn = await asyncpg.connect(self.url, timeout=10)
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

        asyncio.run(create())
        return self.database(name)


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """A new cluster, started; stopped (immediately) and removed on the way out, whatever happened.

    Skips the test where it cannot be made (no ``initdb``, no ``postgres`` user, ``runuser`` refused).
    """
    if not (PG_BIN / "initdb").exists():
        _skip_or_fail(f"no initdb in {PG_BIN} (set VOTE_LEDGER_TEST_PG_BIN)")
    try:
        owner = pwd.getpwnam(OS_USER)
    except KeyError:
        _skip_or_fail(f"no {OS_USER!r} system user to run a throw-away PostgreSQL cluster as")
    root = Path(tempfile.mkdtemp(prefix="vote-ledger-pg-"))
    try:
        if os.geteuid() == 0:
            os.chown(root, owner.pw_uid, owner.pw_gid)
        root.chmod(0o700)
        made = _as_postgres(str(PG_BIN / "initdb"), "-A", "trust", "-U", OS_USER, "-E", "UTF8",
                            "--no-sync", "-D", str(root / "data"))
        if made.returncode != 0:
            why = (made.stderr or made.stdout).strip()
            _skip_or_fail(f"cannot make a throw-away PostgreSQL cluster: {why}")
        cluster = Cluster(root, free_port())
        cluster.start()
        try:
            yield cluster
        finally:
            if cluster.running():
                cluster.stop("immediate")
    finally:
        shutil.rmtree(root, ignore_errors=True)


class Proxy:
    """A TCP relay on 127.0.0.1 to a server's port, which a test cuts off on demand: ``cut``
    resets every connection and refuses new ones (a server that is gone); ``blackhole`` swallows
    every byte both ways and answers no new connection (a network that drops packets: nothing
    fails, nothing arrives); ``restore`` relays again (connections that lost bytes are reset)."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.1)
        self.port: int = self._server.getsockname()[1]
        self._mode = "open"
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._closed = False
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def url(self, database: str) -> str:
        return f"postgresql://{OS_USER}@127.0.0.1:{self.port}/{database}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                mode = self._mode
                self._sockets.add(client)
            if mode == "cut":
                self._drop(client)
            elif mode == "open":
                try:
                    upstream = socket.create_connection(("127.0.0.1", self._target), timeout=5)
                except OSError:
                    self._drop(client)
                    continue
                upstream.settimeout(None)
                with self._lock:
                    self._sockets.add(upstream)
                for source, sink in ((client, upstream), (upstream, client)):
                    thread = threading.Thread(target=self._pump, args=(source, sink), daemon=True)
                    thread.start()
            # blackholed: accepted, never answered, until ``restore`` resets it

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if self._mode == "open":
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(source)
            self._drop(sink)

    def _drop(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked reading it
        sock.close()
        with self._lock:
            self._sockets.discard(sock)

    def _drop_all(self) -> None:
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            self._drop(sock)

    def cut(self) -> None:
        self._mode = "cut"
        self._drop_all()

    def blackhole(self) -> None:
        self._mode = "blackhole"

    def restore(self) -> None:
        if self._mode == "blackhole":
            self._drop_all()
        self._mode = "open"

    def close(self) -> None:
        self._closed = True
        self._server.close()
        self._drop_all()
        self._threads[0].join(timeout=5)


@contextlib.contextmanager
def proxy_to(cluster: Cluster) -> Iterator[Proxy]:
    """A ``Proxy`` to the cluster for the length of a ``with`` block."""
    relay = Proxy(cluster.port)
    try:
        yield relay
    finally:
        relay.close()


Node = Server
"""A ``vote-ledger serve`` node: a server on a database URL."""


def spawn_node(
    db: str, log: Path, *, config: Path | None = None, env: Mapping[str, str] | None = None
) -> Node:
    """Start ``vote-ledger serve --db DB`` without waiting for it (``wait_ready`` does)."""
    return spawn_server(db, config=config, env=env, log=log)


@contextlib.contextmanager
def nodes(
    db: str, logs: Path, count: int, *, config: Path | None = None, env: Mapping[str, str] | None = None
) -> Iterator[list[Node]]:
    """``count`` nodes started together on ``db`` (the first start of each lays out or joins the
    ledger at the same moment); every one is killed on the way out, whatever happened."""
    started: list[Node] = []
    try:
        for n in range(count):
            started.append(spawn_node(db, logs / f"node-{n}.log", config=config, env=env))
        for node in started:
            wait_ready(node)
        yield started
    finally:
        for node in started:
            node.kill()
