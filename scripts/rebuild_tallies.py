"""Rebuild every projection: ``python scripts/rebuild_tallies.py --db PATH`` (``vote-ledger rebuild``)."""

import sys

from api.cli import main

if __name__ == "__main__":
    sys.exit(main(["rebuild", *sys.argv[1:]]))
