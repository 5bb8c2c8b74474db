"""The access log of a real server (uvloop and all): a line per request, timed below the millisecond."""

from __future__ import annotations

from pathlib import Path

from tests.reliability.helpers import http, serving, write_polls


def test_every_request_gets_its_line_with_a_sub_millisecond_duration(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    with serving(db, config=write_polls(tmp_path / "polls.toml")) as server:
        for i in range(20):
            status, _, _ = http("GET", f"{server.url}/candidates", headers={"X-Request-Id": f"probe-{i}"})
            assert status == 200
        assert server.stop() == 0  # a clean exit writes out every line still held
        lines = [line.split() for line in server.log_text().splitlines() if " GET /candidates " in line]
    # time, method, path, status, duration, request id
    assert [fields[-1] for fields in lines] == [f"probe-{i}" for i in range(20)]
    durations = [fields[-2] for fields in lines]
    assert all(d.endswith("ms") for d in durations)
    # the event loop's clock ticks in whole milliseconds under uvloop: these come from perf_counter
    assert any(not d.endswith(".00ms") for d in durations), durations
