"""The key that signs checkpoints: configured, or generated once beside the ledger, like the JWT
secret, but never the same key."""

from __future__ import annotations

import hashlib
import socket
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from api.settings import PREFIX, Settings, SettingsError
from ledger.notes import SigningKeyError, key_from_text, load_or_create_key
from ledger.open import locate
from ledger.tree import Signing


def load_signing(settings: Settings) -> Signing:
    """The ledger's signing key and origin, as the settings say."""
    location = locate(settings.db)
    path = settings.signing_key_file
    try:
        if settings.signing_key:
            key = key_from_text(settings.signing_key)
        elif path is not None:
            key = load_or_create_key(path)
        elif location.shared:
            raise SettingsError(
                f"a ledger several nodes serve needs one signing key for all of them: set {PREFIX}SIGNING_KEY"
            )
        else:  # a ledger kept in memory: its checkpoints need outlive it no more than it does
            key = Ed25519PrivateKey.generate()
    except SigningKeyError as exc:
        raise SettingsError(str(exc)) from None
    if location.path is not None:
        host = socket.gethostname()
    elif location.shared:
        host = urlsplit(settings.db).hostname or "localhost"
    else:
        host = "memory"
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return Signing(key, settings.origin, f"{host}/vote-ledger/{hashlib.sha256(public).hexdigest()[:8]}")
