"""``python -m bench``: the benchmarks (``vote-ledger bench`` runs the same)."""

import sys

from bench.cli import main

sys.exit(main())
