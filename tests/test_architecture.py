"""The layers keep their boundaries, and docs/architecture.md names only what exists."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
PACKAGES = ("api", "projections", "ledger", "bench", "scripts")
BACKENDS = {  # a backend's names, and where alone they may appear
    r"\bsqlite3\b|\baiosqlite\b|\bSqliteEventStore\b": ("ledger/sqlite/",),
    r"\basyncpg\b|\bPostgresEventStore\b": ("ledger/postgres/",),
    r"\bMemoryEventStore\b": ("ledger/memory.py",),
}
BACKEND_FOLDERS = ("ledger/sqlite/", "ledger/postgres/")  # where SQL may be written
CHOOSER = "ledger/open.py"  # open_store picks a backend by name, importing it only there
SQL = re.compile(
    r"\b(SELECT\s.+\sFROM|INSERT\s+(OR\s+\w+\s+)?INTO|CREATE\s+(TABLE|INDEX|TRIGGER|DATABASE|SCHEMA)|DROP\s+(TABLE|DATABASE)"
    r"|ALTER\s+TABLE|UPDATE\s+\w+\s+SET|DELETE\s+FROM|PRAGMA\s+\w+|BEGIN\s+IMMEDIATE)\b"
)


def _sources() -> list[tuple[str, str]]:
    return [
        (path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8"))
        for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
    ]


def test_no_sql_text_outside_the_backends_own_folders() -> None:
    found = [
        f"{name}: {match.group(0)!r}"
        for name, text in _sources() if not name.startswith(BACKEND_FOLDERS)
        for match in SQL.finditer(text)
    ]
    assert found == []


@pytest.mark.parametrize("pattern", list(BACKENDS))
def test_no_backend_is_named_outside_its_own_files(pattern: str) -> None:
    homes = (*BACKENDS[pattern], CHOOSER)
    found = [
        name for name, text in _sources()
        if re.search(pattern, text) and not name.startswith(homes)
    ]
    assert found == []


def test_each_layer_imports_only_the_layers_below_it() -> None:
    below = {"ledger": {"ledger"}, "projections": {"ledger", "projections"}}
    found = [
        f"{name} imports {imported}"
        for name, text in _sources() if name.split("/")[0] in below
        for imported in re.findall(r"^\s*(?:from|import) (\w+)", text, re.MULTILINE)
        if imported in PACKAGES and imported not in below[name.split("/")[0]]
    ]
    assert found == []


def test_every_module_the_architecture_names_exists() -> None:
    named = r"`((?:ledger|projections|api|bench|scripts|tests)/[\w/]*(?:\.py)?)`"
    paths = set(re.findall(named, DOC.read_text()))
    assert len(paths) > 20
    assert sorted(p for p in paths if not (ROOT / p).exists()) == []


def test_every_function_the_architecture_names_is_in_the_module_it_names() -> None:
    pairs = re.findall(r"`((?:ledger|projections|api)/[\w/]+)\.py`\s+`([\w.]+)`", DOC.read_text())
    assert len(pairs) > 10
    missing = []
    for path, dotted in pairs:
        target: object = importlib.import_module(path.replace("/", "."))
        for part in dotted.split("."):
            target = getattr(target, part, None)
        if target is None:
            missing.append(f"{path}.py {dotted}")
    assert missing == []
