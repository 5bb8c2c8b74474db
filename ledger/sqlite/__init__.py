"""The SQLite backend: the ledger in one file, WAL, ``synchronous=FULL``, one writer per process.

Its files, each with one job: ``schema`` (the log's layout and the projection tables' DDL),
``steps`` (a writer connection's steps in plain ``sqlite3``), ``batch_writer`` (the process that
commits group-commit batches), ``client`` (this process's end of it) and ``store`` (the store).
Nothing is imported here, so that the batch writer process stays small.
"""
