"""The streams benchmark runs end to end and reports live streams (its figures are in README.md)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from bench.stream_holder import EVENT, Stream


def test_the_streams_benchmark_measures_votes_with_and_without_live_streams(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.streams", "--streams", "50", "--rounds", "1", "--duration", "1",
         "--voters", "1500", "--workdir", str(tmp_path), "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(done.stdout)
    names = [run["name"] for run in figures["runs"]]
    assert names == ["votes, no stream open", "votes, 50 streams open", "votes, no stream open"]
    assert all(run["ok"] > 0 for run in figures["runs"])
    held = figures["held"][0]
    assert held["open"] == 50 and held["events_min"] >= 1  # every stream got the votes' results
    assert figures["ratio_median"] > 0


def test_a_held_stream_counts_each_results_event_once_however_the_reads_split_it() -> None:
    stream = Stream(b"", asyncio.Event(), [0, 1])
    reads = [b"id: 1\n" + EVENT, b"\ndata: {}\n\n" + EVENT[:3], EVENT[3:5], EVENT[5:] + b"\ndata: {}\n\n"]
    for read in reads:
        stream.data_received(read)
    assert stream.events == 2
    for byte in b"id: 3\n" + EVENT + b"\n\n":  # one byte a read
        stream.data_received(bytes([byte]))
    assert stream.events == 3
