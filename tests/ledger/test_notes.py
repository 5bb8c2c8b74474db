"""The service signs checkpoints as C2SP signed notes, byte for byte as Go's sumdb/note does, with a
key kept once in a 0600 file."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.errors import LedgerError
from ledger.notes import (
    KeyFileError,
    NoteSigner,
    SigningKeyError,
    checkpoint_text,
    key_from_text,
    load_or_create_key,
)
from ledger.verify import EMPTY_ROOT, VerifierKey, open_note, verify_checkpoint

NOTES = json.loads((Path(__file__).parent / "data" / "signed_notes.json").read_text(encoding="utf-8"))
GO = NOTES["go"]
ROOT = Path(__file__).resolve().parents[2]


def peter() -> NoteSigner:
    """Go's test signer: its key is PRIVATE+KEY+<name>+<id>+base64(0x01 || seed)."""
    name, _, encoded = GO["peter_skey"].removeprefix("PRIVATE+KEY+").split("+", 2)
    seed = base64.b64decode(encoded)[1:]
    return NoteSigner(name, Ed25519PrivateKey.from_private_bytes(seed))


def public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def test_a_note_is_signed_byte_for_byte_as_go_signs_it() -> None:
    signer = peter()
    assert signer.verifier_key == GO["peter_vkey"]
    assert signer.sign(GO["text"]) == GO["text"] + "\n" + GO["peter_sig"]


def test_the_same_checkpoint_signed_twice_is_the_same_note() -> None:
    signer = peter()
    assert signer.sign_checkpoint(5, EMPTY_ROOT) == signer.sign_checkpoint(5, EMPTY_ROOT)
    assert signer.sign_checkpoint(5, EMPTY_ROOT) != signer.sign_checkpoint(6, EMPTY_ROOT)


def test_the_checkpoint_text_is_the_c2sp_one() -> None:
    example = NOTES["c2sp_checkpoint"]
    text = checkpoint_text(example["origin"], example["size"], base64.b64decode(example["root"]))
    assert example["note"].startswith(text + "\n\u2014 ")


def test_a_signed_checkpoint_verifies_under_the_signers_verifier_key() -> None:
    signer = NoteSigner("vote-ledger.test/x", Ed25519PrivateKey.generate())
    key = VerifierKey.parse(signer.verifier_key)
    checkpoint = verify_checkpoint(signer.sign_checkpoint(3, EMPTY_ROOT), key)
    assert (checkpoint.origin, checkpoint.size, checkpoint.root) == ("vote-ledger.test/x", 3, EMPTY_ROOT)


@pytest.mark.parametrize("origin", ["", "with space", "a+b", "tab\there", "new\nline"])
def test_an_origin_that_cannot_name_a_key_is_refused(origin: str) -> None:
    with pytest.raises(SigningKeyError):
        NoteSigner(origin, Ed25519PrivateKey.generate())


@pytest.mark.parametrize("text", ["no final newline", "a\rb\n", "a\x00\n"])
def test_a_text_no_verifier_would_open_is_not_signed(text: str) -> None:
    with pytest.raises(ValueError):
        peter().sign(text)


def test_a_note_with_an_empty_line_in_its_text_opens_whole() -> None:
    text = "first\n\nthird\n"
    assert open_note(peter().sign(text), VerifierKey.parse(GO["peter_vkey"])) == text


def test_a_key_in_configuration_is_the_base64_of_its_seed() -> None:
    seed = bytes(range(32))
    key = key_from_text(" " + base64.b64encode(seed).decode() + "\n")
    assert key.private_bytes_raw() == seed


@pytest.mark.parametrize("text", ["", "not base64!", base64.b64encode(bytes(31)).decode(),
                                  base64.b64encode(bytes(33)).decode(), "AAAA\nAAAA"])
def test_a_malformed_key_text_is_refused(text: str) -> None:
    with pytest.raises(SigningKeyError, match="32-byte Ed25519 seed"):
        key_from_text(text)


def test_the_key_file_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "ledger" / "signing.key"
    first = load_or_create_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert public(load_or_create_key(path)) == public(first)
    assert key_from_text(path.read_text()).private_bytes_raw() == first.private_bytes_raw()
    assert os.listdir(path.parent) == ["signing.key"]  # no temporary file left behind


def test_a_key_file_open_to_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    load_or_create_key(path)
    path.chmod(0o640)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_or_create_key(path)


@pytest.mark.parametrize("content", ["", "AAAA\n", "not a key\n", "\xff"])
def test_a_malformed_key_file_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "signing.key"
    path.write_text(content, encoding="latin-1")
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="holds no signing key") as raised:
        load_or_create_key(path)
    assert "\n" not in str(raised.value)


def test_a_key_path_that_is_not_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "signing.key").mkdir()
    with pytest.raises(KeyFileError, match="not a file"):
        load_or_create_key(tmp_path / "signing.key")


def test_a_key_file_that_cannot_be_created_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(KeyFileError, match="cannot be used"):
        load_or_create_key(tmp_path / "file" / "signing.key")


def test_key_errors_are_ledger_errors() -> None:
    assert issubclass(KeyFileError, SigningKeyError) and issubclass(SigningKeyError, LedgerError)


def test_processes_starting_at_once_end_with_one_key(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    code = (
        "import sys, time; from pathlib import Path; from ledger.notes import load_or_create_key\n"
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
        "key = load_or_create_key(Path(sys.argv[1]))\n"
        "print(key.public_key().public_bytes_raw().hex())\n"
    )
    start = str(time.time() + 1.0)  # every process past its imports by then
    command = [sys.executable, "-c", code, str(path), start]
    processes = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(4)]
    keys = {process.communicate(timeout=60)[0].strip() for process in processes}
    assert all(process.returncode == 0 for process in processes)
    assert keys == {public(load_or_create_key(path)).hex()}
    assert os.listdir(tmp_path) == ["signing.key"]
