"""The streams benchmark runs end to end and reports live streams (its figures are in README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


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
