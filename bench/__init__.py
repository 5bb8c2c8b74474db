"""The benchmarks: the real service in its own process, driven by a real load generator.

A tool on top of the service, not part of it: it imports ``api``, ``projections`` and ``ledger``,
and none of them imports it. Its files, each with one job: ``cli`` (the flags; ``vote-ledger
bench`` and ``python -m bench``), ``scenarios`` (the HTTP routes against ``ceiling``, a bare
aiohttp handler), ``ledger_run`` (``--ledger``: a ledger of many events), ``logins`` (``--logins``:
logins a second with few users and with many), ``ledgers`` (ledgers built fast), ``harness``
(driving a server with wrk and its ``*.lua`` scripts), ``processes`` (starting and stopping
servers), ``procfs`` (what ``/proc`` tells of them) and ``report`` (the figures as tables); and
``streams`` (``python -m bench.streams``: what open results streams cost the votes), whose
streams ``stream_holder`` holds open in a process of its own.
"""
