"""Audit a ledger: ``python scripts/audit_replay.py --db PATH [--json]`` (same as ``vote-ledger audit``)."""

import sys

from api.cli import main

if __name__ == "__main__":
    sys.exit(main(["audit", *sys.argv[1:]]))
