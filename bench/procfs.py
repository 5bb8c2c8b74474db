"""What Linux's ``/proc`` tells of a process: its stat fields, its children, its command line and
its resident size.

Each answers None, nothing or 0 where ``/proc`` does not tell (another system, or a process that
has ended).
"""

from __future__ import annotations

from pathlib import Path


def stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state, parent, ...)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    return [
        int(entry.name) for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and (fields := stat_fields(int(entry.name))) is not None
        and int(fields[1]) == pid
    ]


def rss_kib(pid: int) -> int:
    """The resident size of ``pid``, in KiB."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def command_line(pid: int) -> bytes:
    """The arguments ``pid`` was started with, NUL-separated."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
