"""The service's signatures: checkpoints as C2SP signed notes, and the Ed25519 key that signs them.

The key file holds the 32-byte Ed25519 private key (the RFC 8032 seed) in standard base64 on one
line, nothing else. It is made once, beside the ledger, with mode 0600, and refused if others can
read it. The key's name is the ledger's origin, so the verifier key names the log it checks.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.errors import LedgerError
from ledger.verify import key_id_of, valid_key_name, verifier_key_string


class SigningKeyError(LedgerError):
    """The checkpoint signing key cannot be used."""


class KeyFileError(SigningKeyError):
    """The signing key's file cannot be read, is malformed, or is readable by others."""


def checkpoint_text(origin: str, size: int, root: bytes) -> str:
    """The C2SP tlog-checkpoint text: origin, tree size and root hash, a line each."""
    if size < 0 or len(root) != 32:
        raise ValueError("a checkpoint needs a size of at least 0 and a 32-byte root hash")
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


class NoteSigner:
    """Signs notes as ``origin`` with an Ed25519 key. Ed25519 is deterministic: a text signed
    twice gives the same note."""

    def __init__(self, origin: str, private_key: Ed25519PrivateKey) -> None:
        if not valid_key_name(origin):
            raise SigningKeyError(f"the origin {origin!r} cannot name a key: no spaces, no '+', not empty")
        public_key = private_key.public_key().public_bytes_raw()
        self.origin = origin
        self.key_id = key_id_of(origin, public_key)
        self.verifier_key = verifier_key_string(origin, public_key)
        self._private_key = private_key

    def sign(self, text: str) -> str:
        """The signed note of ``text`` (which must end in a newline and hold no other control character)."""
        if not text.endswith("\n") or any(c < " " and c != "\n" for c in text) or "\x7f" in text:
            raise ValueError("a note's text ends in a newline and holds no other control character")
        signature = self._private_key.sign(text.encode())
        line = base64.b64encode(self.key_id + signature).decode()
        return f"{text}\n\u2014 {self.origin} {line}\n"

    def sign_checkpoint(self, size: int, root: bytes) -> str:
        """The signed checkpoint of the tree of ``size`` leaves and ``root``."""
        return self.sign(checkpoint_text(self.origin, size, root))


def key_from_text(text: str) -> Ed25519PrivateKey:
    """The private key written as base64 of its 32-byte seed (surrounding whitespace ignored)."""
    try:
        seed = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        seed = b""
    if len(seed) != 32:
        raise SigningKeyError("a signing key is the base64 of a 32-byte Ed25519 seed, on one line")
    return Ed25519PrivateKey.from_private_bytes(seed)


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The key kept in ``path``, generated there first if there is none."""
    try:
        if not path.exists():
            _create(path)
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise KeyFileError(f"{path} is not a file")
        if mode & 0o077:
            raise KeyFileError(f"{path} is open to other users (mode {mode & 0o777:o}); chmod 600 it")
        text = path.read_text(encoding="ascii")
    except OSError as exc:
        raise KeyFileError(f"{path} cannot be used: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        text = ""
    try:
        return key_from_text(text)
    except SigningKeyError:
        raise KeyFileError(f"{path} holds no signing key (base64 of a 32-byte Ed25519 seed)") from None


def _create(path: Path) -> None:
    """Write a new key whole under a temporary name, then link it into place: a crash or a second
    process starting at the same moment never sees half a key, and only one key wins."""
    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(base64.b64encode(seed).decode() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return  # another process won the race: its key is the key
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the key is never lost once a checkpoint is signed with it
        finally:
            os.close(directory)
    finally:
        temporary.unlink()

