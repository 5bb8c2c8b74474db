"""Check a receipt offline: ``python scripts/verify_receipt.py FILE --key KEY`` (``vote-ledger verify``)."""

import sys

from ledger.verify import main

if __name__ == "__main__":
    sys.exit(main(["receipt", *sys.argv[1:]]))
