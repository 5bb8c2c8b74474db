"""Throughput benchmark: ``python scripts/bench.py [--users N] [--json]`` (``vote-ledger bench``,
``python -m bench``)."""

import sys

# Python puts this file's directory first on the path, where this file's name would hide the
# bench package.
del sys.path[0]

from bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(prog="scripts/bench.py"))
