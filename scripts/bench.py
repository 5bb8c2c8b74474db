"""Throughput benchmark: ``python scripts/bench.py [--users N] [--json]`` (``vote-ledger bench``)."""

import sys

from api.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
