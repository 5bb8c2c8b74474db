"""Helper processes of the service's own (the SQLite batch writer, the seal worker): how one is
started on this very package, and the length-prefixed pickles it and the server exchange over its
standard input and output, one request at a time."""

from __future__ import annotations

import contextlib
import os
import pickle
import site
import struct
import sys
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:  # only: the helpers import this module, and the batch writer keeps asyncio out
    import asyncio

FRAME = struct.Struct("<I")  # each message's length, before it
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])
_CHECKOUT = "" if _PACKAGE_ROOT in site.getsitepackages() else _PACKAGE_ROOT
"""Where this package stands when it is not installed: a helper imports this very one."""


def helper_command(module: str, *args: str) -> list[str]:
    """The command that runs ``module.main(args)`` in a new interpreter of this one, on this
    package (-P: no working directory on its path, where another ``ledger`` could stand)."""
    launch = (
        "import sys; sys.path[:0] = [p for p in sys.argv[1:2] if p]; "
        f"from {module} import main; sys.exit(main(sys.argv[2:]))"
    )
    return [sys.executable, "-P", "-c", launch, _CHECKOUT, *args]


def frame(message: object) -> bytes:
    """A message as it goes down the pipe."""
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return FRAME.pack(len(payload)) + payload


def read_frame(stream: BinaryIO) -> object | None:
    """The next message, or None when the input has ended."""
    header = stream.read(FRAME.size)
    if len(header) < FRAME.size:
        return None
    (size,) = FRAME.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:
        return None
    message: object = pickle.loads(payload)
    return message


async def receive(stream: asyncio.StreamReader) -> object:
    """The next message from a helper (``asyncio.IncompleteReadError`` once its output has ended)."""
    (size,) = FRAME.unpack(await stream.readexactly(FRAME.size))
    message: object = pickle.loads(await stream.readexactly(size))
    return message


async def reap(process: asyncio.subprocess.Process, patience: float) -> None:
    """Wait up to ``patience`` seconds for a helper to end, then kill it."""
    import asyncio  # here, for the same reason

    if process.returncode is not None:
        return
    try:
        await asyncio.wait_for(process.wait(), patience)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
            process.kill()
        await process.wait()


def helper_streams() -> tuple[BinaryIO, BinaryIO]:
    """A helper's requests and replies: its standard input, and a copy of its standard output
    (standard output itself then goes to standard error, so a stray print cannot corrupt the
    replies). Nothing else the server left open stays open."""
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    try:
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    except OSError:  # no standard error either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return sys.stdin.buffer, replies
