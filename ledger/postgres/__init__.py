"""The PostgreSQL backend: one database that several service nodes share.

``schema`` lays out the log, its triggers and the projection tables (from their specs); ``store``
is the store, over ``asyncpg``. Appends are serialized by a transaction-scoped advisory lock, so
``seq`` is gapless in commit order; LISTEN/NOTIFY wakes other nodes, which then re-read the log.
"""
