"""The benchmarks: the real service in its own process, driven by a real load generator.

A tool on top of the service, not part of it: it imports ``api``, ``projections`` and ``ledger``,
and none of them imports it.
"""
