"""The benchmark's processes: the servers it starts and stops, its set-up commands, their
environment, and the directory they work in."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from api.settings import PREFIX

SECRET = "bench-secret-" + "b" * 40
SIGNING_KEY = "YmVuY2gtY2hlY2twb2ludC1zaWduaW5nLWtleS0zMmI="  # base64 of a 32-byte Ed25519 seed
"""The JWT secret of every server the benchmark starts (it mints its voters' tokens with it)."""


class BenchError(Exception):
    """The benchmark could not run: a set-up step failed, a server did not start, wrk gave no
    figures."""


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(it said nothing)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def child_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment for a child process: this one's without its ``VOTE_LEDGER_*`` settings,
    plus ``extra`` (so the benchmark's children get exactly the settings it gives them)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(PREFIX)}
    env.update(extra)
    return env


def environment(db: str | Path) -> dict[str, str]:
    """The settings of the service on ``db`` (a path or a URL): the benchmark's secret and
    checkpoint signing key, which every node shares, and a cheap hashing cost."""
    return child_environment({
        "VOTE_LEDGER_DB": str(db),
        "VOTE_LEDGER_JWT_SECRET": SECRET,
        "VOTE_LEDGER_SIGNING_KEY": SIGNING_KEY,
        "VOTE_LEDGER_ARGON2_TIME_COST": "1",
        "VOTE_LEDGER_ARGON2_MEMORY_COST": "8",
        "VOTE_LEDGER_ARGON2_PARALLELISM": "1",
    })


def command(*args: str) -> list[str]:
    """``vote-ledger ARGS``, in this interpreter."""
    return [sys.executable, "-m", "api.cli", *args]


def _wait_for(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            said = last_line(log.read_text(errors="replace"))
            raise BenchError(f"the server exited with {process.returncode} before listening: {said}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"the server did not start listening within {timeout:g} s (its log: {log})")


def serve(argv: list[str], env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    """Start a server, its standard error (and access log) going to ``log``, and wait until it
    listens."""
    with log.open("wb") as handle:
        process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=handle)
    try:
        _wait_for(port, process, log)
    except BaseException:  # not left running on its files
        stop(process)
        raise
    return process


def step(what: str, argv: list[str], env: dict[str, str]) -> None:
    """Run a set-up command; BenchError with its last line if it fails."""
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"{what} failed: {last_line(done.stderr + done.stdout)}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def in_workdir(keep: Path | None, job: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """``job``'s figures, run in ``keep`` or in a temporary directory that goes once the figures
    are in (a run leaves hundreds of megabytes of ledger behind it)."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        return {**job(keep), "workdir": str(keep)}
    work = Path(tempfile.mkdtemp(prefix="vote-ledger-bench-"))
    try:
        return {**job(work), "workdir": None}
    finally:
        shutil.rmtree(work, ignore_errors=True)
