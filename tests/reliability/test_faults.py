"""Disk and database faults under a real ``vote-ledger serve``: 503 with the JSON error shape, nothing
acknowledged that was not committed, and recovery without a restart once the fault clears.

Faults injected: the write lock held by another process past the busy timeout; a full disk (a small
tmpfs filled to the last byte); a file-size limit on the batch writer process (every write past the
WAL's header fails with EFBIG, which SQLite reports as a disk I/O error); a read-only file system at
start-up; the batch writer process killed again and again while votes are in flight.
Tests run as root, where ``chmod 0444`` does not stop writes, and a file system cannot be remounted
read-only while the service holds its files open for writing (EBUSY), so "read-only" is tested at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from ledger.events import VoteCast
from projections.commands import idempotency_digest
from tests.ledger.helpers import batch_writers
from tests.reliability.helpers import (
    Server,
    assert_error_shape,
    audit_ok,
    http,
    import_users,
    login,
    read_log,
    rebuild_changes,
    run_cli,
    serving,
    start_server,
    write_polls,
    write_users,
)

TIMEOUT = aiohttp.ClientTimeout(total=20)
VOTERS = 6


@dataclass
class Write:
    """One write request sent while the fault was on, and its answer."""

    name: str
    method: str
    path: str
    body: dict[str, object] | None
    headers: dict[str, str]
    key: tuple[str, str] | None = None  # (user id, Idempotency-Key) of a marathon vote
    leader_user: str | None = None  # the user of a /vote in the single poll
    status: int = 0
    answer: bytes = b""


@dataclass
class Fixture:
    db: Path
    config: Path
    users: list[tuple[str, str]]
    logs: Path


def _prepare(root: Path, db: Path) -> Fixture:
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    users = write_users(logs / "users.jsonl", VOTERS)
    import_users(db, logs / "users.jsonl")
    return Fixture(db, write_polls(logs / "polls.toml"), users, logs)


def _writes(server: Server, fx: Fixture, tag: str) -> list[Write]:
    """A vote in each poll per user (both surfaces), and a signup on each surface."""
    writes: list[Write] = []
    for n, (email, password) in enumerate(fx.users):
        token = login(server.url, email, password)
        me = json.loads(_get(server, "/api/v1/me", token)[1])
        user_id = me["user"]["id"]
        key = f"{tag}-{n}"
        writes.append(
            Write(
                f"marathon vote {n}",
                "POST",
                "/api/v1/polls/marathon/votes",
                {"candidateId": 4},
                {"Authorization": f"Bearer {token}", "Idempotency-Key": key},
                key=(user_id, key),
            )
        )
        if not me["polls"][0]["voted"]:
            writes.append(
                Write(
                    f"leader vote {n}",
                    "GET",
                    f"/vote?id={1 + n % 3}",
                    None,
                    {"Authorization": token},
                    leader_user=user_id,
                )
            )
    writes.append(
        Write(
            "signup",
            "POST",
            "/api/v1/users",
            {"email": f"{tag}@example.org", "name": tag, "password": "password-123"},
            {},
        )
    )
    writes.append(
        Write(
            "legacy signup",
            "POST",
            "/auth/signup",
            {"email": f"{tag}-legacy@example.org", "name": tag, "password": "pw"},
            {},
        )
    )
    return writes


def _get(server: Server, path: str, token: str | None = None) -> tuple[int, bytes]:
    status, _, body = http("GET", server.url + path, headers={"Authorization": token} if token else None)
    return status, body


async def _send_all(url: str, writes: list[Write]) -> None:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:

        async def one(w: Write) -> None:
            async with session.request(w.method, url + w.path, json=w.body, headers=w.headers) as response:
                w.status, w.answer = response.status, await response.read()
                if response.status == 503:
                    assert response.headers.get("Retry-After"), w.name

        await asyncio.gather(*(one(w) for w in writes))


def _digested(key: tuple[str, str]) -> tuple[str, str]:
    """A (user, key) pair as the ledger keeps it: the key as its digest."""
    return key[0], idempotency_digest(key[1])


def _landed(db: Path) -> tuple[Counter[tuple[str, str]], Counter[str]]:
    """How often each (user, key) of a keyed vote is in the log, and each user's votes in the single poll."""
    log = asyncio.run(read_log(db))
    votes = [env.event for _, env in log if isinstance(env.event, VoteCast)]
    keyed = Counter((v.user_id, v.key) for v in votes if v.key is not None)
    leader = Counter(v.user_id for v in votes if v.poll_id == "leader")
    return keyed, leader


def _under_fault(server: Server, fx: Fixture, tag: str, *, all_refused: bool) -> list[Write]:
    """Send the writes while the fault is on; 503 ``unavailable`` for each (or a 2xx that must be kept)."""
    writes = _writes(server, fx, tag)
    asyncio.run(_send_all(server.url, writes))
    for w in writes:
        if all_refused or not 200 <= w.status < 300:
            assert w.status == 503, (w.name, w.status, w.answer)
            assert assert_error_shape(w.status, w.answer, allow_5xx=True)["code"] == "store_unavailable"
    assert any(w.status == 503 for w in writes), "the fault refused nothing"
    # reads keep working while writes cannot
    assert _get(server, "/candidates")[0] == 200
    assert _get(server, "/api/v1/polls/marathon/results")[0] == 200
    assert server.alive()
    return writes


def _check_nothing_refused_landed(db: Path, writes: list[Write]) -> None:
    keyed, leader = _landed(db)
    for w in writes:
        in_log = keyed[_digested(w.key)] if w.key else leader[w.leader_user] if w.leader_user else None
        if in_log is None:
            continue
        if w.status == 503:
            assert in_log == 0, f"{w.name} was refused with 503 but is in the ledger"
        else:
            assert in_log == 1, f"{w.name} was acknowledged ({w.status}) but is in the ledger {in_log} times"


def _recover(server: Server, fx: Fixture, writes: list[Write], deadline_s: float = 10) -> None:
    """Once the fault is gone the same service takes writes again: the refused ones, retried, land once."""
    retry = [w for w in writes if w.status == 503]
    # a keyed vote, if one was refused, can be sent until it lands, and lands once; the disk may have
    # had room for every keyed vote, and then any refused write will do (landing twice would be a 409)
    probe = next((w for w in retry if w.key), retry[0])
    for _ in range(int(deadline_s / 0.2)):
        asyncio.run(_send_all(server.url, [probe]))
        if probe.status != 503:
            break
        time.sleep(0.2)
    asyncio.run(_send_all(server.url, [w for w in retry if w is not probe]))
    for w in retry:
        assert 200 <= w.status < 300, (w.name, w.status, w.answer)
    status, body = _get(server, "/healthz")
    assert status == 200, body
    keyed, leader = _landed(fx.db)
    for w in writes:
        if w.key:
            assert keyed[_digested(w.key)] == 1, w.name
        if w.leader_user:
            assert leader[w.leader_user] == 1, w.name


def _finish(server: Server, db: Path) -> None:
    assert server.stop() == 0, server.log_text()[-2000:]
    audit_ok(db)
    assert rebuild_changes(db) == 0


def test_write_lock_held_past_the_busy_timeout_answers_503_and_recovers(tmp_path: Path) -> None:
    fx = _prepare(tmp_path, tmp_path / "ledger.db")
    with serving(fx.db, config=fx.config, env={"VOTE_LEDGER_BUSY_TIMEOUT": "200"}) as server:
        holder = sqlite3.connect(fx.db, timeout=5, isolation_level=None)
        try:
            holder.execute("BEGIN EXCLUSIVE")
            writes = _under_fault(server, fx, "locked", all_refused=True)
            status, body = _get(server, "/healthz")
            assert status == 503
            assert assert_error_shape(status, body, allow_5xx=True)["code"] == "store_unavailable"
            _check_nothing_refused_landed(fx.db, writes)
        finally:
            holder.close()  # rolls back and releases the lock
        _recover(server, fx, writes)
        _finish(server, fx.db)


def test_batch_writers_killed_under_load_lose_and_double_nothing(tmp_path: Path) -> None:
    # Each batch writer is killed a few milliseconds into its life, again and again, while the
    # writes are in flight: every write is answered 2xx (in the ledger once) or 503 (not in it)
    fx = _prepare(tmp_path, tmp_path / "ledger.db")
    with serving(fx.db, config=fx.config, log=fx.logs / "serve.log") as server:
        writes = _writes(server, fx, "killed")
        stop, killed = threading.Event(), set()

        def killer() -> None:
            while not stop.is_set():
                for pid in batch_writers(server.pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                        killed.add(pid)
                time.sleep(0.005)

        thread = threading.Thread(target=killer)
        thread.start()
        try:
            asyncio.run(_send_all(server.url, writes))
        finally:
            stop.set()
            thread.join()
        assert killed
        for w in writes:
            if not 200 <= w.status < 300:
                assert w.status == 503, (w.name, w.status, w.answer)
                assert assert_error_shape(w.status, w.answer, allow_5xx=True)["code"] == "store_unavailable"
        _check_nothing_refused_landed(fx.db, writes)
        refused = [w for w in writes if w.status == 503]  # none of them landed: each may be sent again
        asyncio.run(_send_all(server.url, refused))
        assert all(200 <= w.status < 300 for w in writes), [(w.name, w.status) for w in refused]
        _check_nothing_refused_landed(fx.db, writes)
        assert "Traceback" not in server.log_text()
        _finish(server, fx.db)


@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A small tmpfs at ``path`` (skips the test where mounting is not allowed); unmounted afterwards."""
    path.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _fill(directory: Path) -> Path:
    """Write a file until the file system has not one byte left."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 1 << 16, 1 << 12, 512, 1):
            chunk = b"\0" * size
            with contextlib.suppress(OSError):
                for _ in range(10_000):
                    os.write(fd, chunk)
    finally:
        os.close(fd)
    return filler


def test_full_disk_answers_503_and_recovers_when_space_is_freed(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "disk", "8m") as disk:
        fx = _prepare(tmp_path, disk / "ledger.db")
        server = start_server(fx.db, config=fx.config, log=fx.logs / "serve.log")
        try:
            filler = _fill(disk)
            writes = _under_fault(server, fx, "full", all_refused=False)
            _check_nothing_refused_landed(fx.db, writes)
            filler.unlink()
            _recover(server, fx, writes)
            _finish(server, fx.db)
        finally:
            server.kill()


def test_healthz_is_503_while_the_disk_is_full(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "disk", "8m") as disk:
        fx = _prepare(tmp_path, disk / "ledger.db")
        with serving(fx.db, config=fx.config, log=fx.logs / "serve.log") as server:
            filler = _fill(disk)
            try:
                token = login(server.url, *fx.users[0])
                # The first votes may still fit in the WAL, which the batch writer reuses from its
                # head once a batch is checkpointed; a full disk refuses the ones that need more.
                statuses: list[int] = []
                while len(statuses) < 200 and (not statuses or statuses[-1] == 201):
                    status, _, _ = http(
                        "POST",
                        f"{server.url}/api/v1/polls/marathon/votes",
                        {"candidateId": 4},
                        {"Authorization": f"Bearer {token}"},
                    )
                    statuses.append(status)
                assert statuses[-1] == 503, statuses  # the disk is full: writes fail ...
                assert _get(server, "/healthz")[0] == 503  # ... so the ledger is not writable
            finally:
                filler.unlink()


WAL_HEADER = 32  # bytes: every frame of a commit is written past it


def _set_file_size_limit(pid: int, limit: str) -> None:
    # only the soft limit: raising it back needs no privilege (the hard limit stays unlimited);
    # only the server's batch writer, which commits every write: the server's own log goes on
    for process in batch_writers(pid):
        subprocess.run(["prlimit", f"--pid={process}", f"--fsize={limit}:unlimited"], check=True,
                       capture_output=True)


def test_io_error_from_a_file_size_limit_answers_503_and_recovers(tmp_path: Path) -> None:
    if shutil.which("prlimit") is None:
        pytest.skip("no prlimit command")
    fx = _prepare(tmp_path, tmp_path / "ledger.db")
    with serving(fx.db, config=fx.config, log=fx.logs / "serve.log") as server:
        # A limit at the size of the files, as before, no longer refuses anything for sure: each
        # batch is checkpointed, so the next commit writes the WAL again from its head.
        _set_file_size_limit(server.pid, str(WAL_HEADER))
        try:
            writes = _under_fault(server, fx, "efbig", all_refused=True)
            _check_nothing_refused_landed(fx.db, writes)
        finally:
            _set_file_size_limit(server.pid, "unlimited")
        _recover(server, fx, writes)
        _finish(server, fx.db)


def _remount(path: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True, capture_output=True)


def test_read_only_file_system_at_start_is_refused_in_one_line_then_serves_once_writable(
    tmp_path: Path,
) -> None:
    with _tmpfs(tmp_path / "disk", "8m") as disk:
        fx = _prepare(tmp_path, disk / "ledger.db")
        before = {p.name: p.read_bytes() for p in disk.iterdir()}
        _remount(disk, "ro")
        try:
            with pytest.raises(RuntimeError) as refused:
                start_server(fx.db, config=fx.config, log=fx.logs / "ro.log", ready_timeout=20)
        finally:
            _remount(disk, "rw")
        output = (fx.logs / "ro.log").read_text(encoding="utf-8").strip()
        assert "exited with 1" in str(refused.value)
        assert output.startswith("vote-ledger: error:") and "\n" not in output, output
        assert {p.name: p.read_bytes() for p in disk.iterdir()} == before
        with serving(fx.db, config=fx.config, log=fx.logs / "rw.log") as server:
            token = login(server.url, *fx.users[0])
            status, _, body = http(
                "POST",
                f"{server.url}/api/v1/polls/marathon/votes",
                {"candidateId": 5},
                {"Authorization": f"Bearer {token}"},
            )
            assert status == 201, body
            _finish(server, fx.db)


def test_audit_reads_a_ledger_on_read_only_media(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "disk", "8m") as disk:
        fx = _prepare(tmp_path, disk / "ledger.db")
        _remount(disk, "ro")
        try:
            audit = run_cli("audit", "--db", str(fx.db))
        finally:
            _remount(disk, "rw")
        assert audit.returncode == 0, audit.stdout + audit.stderr
