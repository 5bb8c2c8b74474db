"""The ledger's own error types: storage driver errors are translated into these at the store's edge."""


class LedgerError(Exception):
    """Base of every error the ledger raises."""


class NotALedgerError(LedgerError):
    """The file is missing, is not a SQLite database, or was not written by vote-ledger."""


class SchemaTooNewError(LedgerError):
    """The ledger was written by a newer schema than this program understands."""


class StoreUnavailableError(LedgerError):
    """The store cannot take writes right now (read-only file, disk full, lock held too long)."""


class ConcurrencyError(LedgerError):
    """An append conflicted with another writer (a stream version or event id already taken)."""


class EncodingError(LedgerError):
    """A value cannot be written as canonical JSON under the ledger's rules."""


class CorruptEventError(LedgerError):
    """A stored body does not decode to a known event type and version."""
