"""What a real ``vote-ledger serve`` answers and logs for requests its HTTP parser refuses, and for
clients that leave partway through a body: the JSON error shape, nothing of the input quoted back,
one log line each, never a traceback or a 500."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.corpus import ABORTED_BODIES, ECHO, PARSER_REJECTIONS
from tests.reliability.helpers import Server, assert_error_shape, http, start_server, write_polls


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root: Path = tmp_path_factory.mktemp("rejections")
    server = start_server(root / "ledger.db", config=write_polls(root / "polls.toml"))
    try:
        yield server
    finally:
        server.kill()


def _exchange(server: Server, data: bytes, *, close_early: bool = False) -> bytes:
    """Send ``data`` on a new connection; everything the server answers until it closes (or, with
    ``close_early``, nothing: the client closes first)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(data)
        if close_early:
            time.sleep(0.2)  # the handler is waiting for the rest of the body
            return b""
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def _log_offset(server: Server) -> int:
    """Where the log will go on from once every line so far is written: a request is made and
    its access line awaited (they are written after the answer)."""
    marker = f"settle-{time.monotonic_ns()}"
    status, _, _ = http("GET", f"{server.url}/healthz", headers={"X-Request-Id": marker})
    assert status == 200
    deadline = time.monotonic() + 5
    while marker not in server.log_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    return len(server.log_text())


def _new_log(server: Server, offset: int, expected: int) -> list[str]:
    """The server's log lines past ``offset``, once ``expected`` have come (or 5 s have passed)."""
    deadline = time.monotonic() + 5
    while True:
        lines = server.log_text()[offset:].splitlines()
        if len(lines) >= expected or time.monotonic() > deadline:
            time.sleep(0.2)  # and any line that should not be there
            return server.log_text()[offset:].splitlines()
        time.sleep(0.05)


def test_parser_rejections_answer_the_error_shape_quote_nothing_and_log_one_line_each(
    server: Server,
) -> None:
    offset = _log_offset(server)
    for label, request in PARSER_REJECTIONS:
        answer = _exchange(server, request)
        head, _, body = answer.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        assert 400 <= status < 500, (label, answer[:300])
        assert b"content-type: application/json" in head.lower(), (label, head)
        error = assert_error_shape(status, body)
        assert error["code"] == "malformed_request", (label, error)
        assert ECHO not in answer and ECHO.decode().lower() not in answer.decode("latin-1").lower(), label
    lines = _new_log(server, offset, len(PARSER_REJECTIONS))
    assert len(lines) == len(PARSER_REJECTIONS), "\n".join(lines)
    assert all("refused a request from 127.0.0.1" in line for line in lines), "\n".join(lines)
    assert not any(ECHO.decode() in line for line in lines), "\n".join(lines)


def test_a_client_that_leaves_mid_body_is_one_line_not_a_500(server: Server) -> None:
    offset = _log_offset(server)
    for _, request in ABORTED_BODIES:
        _exchange(server, request, close_early=True)
    # one line for the disconnect and the access line of each; nothing else
    lines = _new_log(server, offset, 2 * len(ABORTED_BODIES))
    log = "\n".join(lines)
    assert "Traceback" not in log and "unexpected error" not in log and " 500 " not in log, log
    assert sum("the client disconnected during POST" in line for line in lines) == len(ABORTED_BODIES), log
    assert len(lines) == 2 * len(ABORTED_BODIES), log
