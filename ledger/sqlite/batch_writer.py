"""The process that commits the group-commit batches of one ledger file.

``ledger.sqlite.client`` starts it (``main(URI, PATH, BUSY_TIMEOUT_MS)`` in a new interpreter) and
talks to it over its standard input and output, one request at a time, each a length-prefixed
pickle. It first answers ``(True, None)`` once its connection is open (or ``(False, error)`` and
ends); then ``("batch", head, event rows, statements, wipe)`` gets ``(True, foreign event rows)``,
``("probe",)`` a tiny durable write and ``(True, None)``, any failure ``(False, error)``, and
``None`` ends it after ``(True, None)``. Its SQLite work holds no lock that the server's
event loop needs: in a thread of the server, every step of a commit waited for the interpreter lock
behind the requests the loop was serving, and how long a commit takes sets how many votes wait
behind it.

It runs in a session of its own, out of reach of a Ctrl-C meant for the server, and ignores SIGINT
and SIGTERM, which a service manager may send to every process of the service: it ends when the
store closes it or when its input ends, which is also what happens when the server dies, so it
never outlives the server by more than the step it is in.
"""

from __future__ import annotations

import contextlib
import pickle
import signal
import sqlite3
from pathlib import Path
from typing import BinaryIO, cast

from ledger.errors import LedgerError
from ledger.pipes import frame, helper_streams, read_frame
from ledger.sqlite.steps import BATCH_CACHE_KIB, Connection, Row, Statement, translate, writer_connection
from ledger.store import Head, StoredEvent

Batch = tuple[tuple[int, bytes], list[Row], list[Statement], bool]
"""A head, event rows, statements, and whether to wipe the WAL once committed (an erasure)."""

def serve(uri: str, path: Path, busy_timeout_ms: int, requests: BinaryIO, replies: BinaryIO) -> None:
    """Answer requests until told to close or until the input ends."""
    def reply(message: object) -> None:
        try:
            data = frame(message)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:  # an error that cannot travel
            data = frame((False, LedgerError(f"the batch writer failed: {message!r} ({exc})")))
        replies.write(data)
        replies.flush()

    try:
        connection = Connection(writer_connection(uri, busy_timeout_ms, BATCH_CACHE_KIB), path)
    except sqlite3.Error as exc:
        reply((False, translate(exc, path)))
        return
    reply((True, None))
    try:
        while (request := read_frame(requests)) is not None:
            try:
                outcome: tuple[bool, object] = (True, _answer(connection, request))
            except sqlite3.Error as exc:
                outcome = (False, translate(exc, path))
            except Exception as exc:  # the caller raises it as its own: a batch fails, not the process
                outcome = (False, exc)
            reply(outcome)
            # Its callers have their answer; the server decides the next batch meanwhile. The
            # store's checkpoint beside this writer never finishes while batches keep coming
            # (the WAL grew by 30 MB a second under votes, and each commit had to extend it);
            # here nothing commits in between, so the next commit starts the WAL from its head.
            connection.checkpoint()
        reply((True, None))
    finally:
        connection.conn.close()


def _answer(connection: Connection, request: object) -> object:
    """What one request asks of the connection: a batch (the foreign events it missed) or a probe."""
    kind, *fields = cast(tuple[object, ...], request)
    if kind == "batch":
        head, rows, statements, wipe = cast(Batch, fields)
        foreign = connection.commit_batch(Head(*head), StoredEvent.from_rows(rows), statements)
        if wipe and not foreign:
            connection.wipe_wal()
        return [tuple(e) for e in foreign]
    if kind == "probe":
        connection.probe()
        return None
    raise LedgerError(f"the batch writer got an unknown request {kind!r}")


def main(argv: list[str]) -> int:
    """Serve the store that started this process, on standard input and output."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    requests, replies = helper_streams()
    uri, path, timeout = argv
    try:
        serve(uri, Path(path), int(timeout), requests, replies)
    except BrokenPipeError:  # the store is gone: nobody is left to answer
        with contextlib.suppress(OSError):
            replies.close()
    return 0
