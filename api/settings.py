"""The one settings object: read once at start-up from CLI flags and ``VOTE_LEDGER_*`` variables."""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ledger.open import UnknownBackendError, locate

PREFIX = "VOTE_LEDGER_"


class SettingsError(ValueError):
    """A setting has a value that cannot be used."""


@dataclass(frozen=True)
class Settings:
    """Everything configurable. Defaults are safe for production; tests lower the hashing cost."""

    db: str = "data/vote-ledger.db"  # a path, sqlite:///PATH or memory: (ledger.open.open_store)
    config: Path | None = None  # the polls file; None loads the bundled demo poll
    jwt_secret: str | None = field(default=None, repr=False)  # None: a generated key file
    token_lifetime: int = 24 * 3600  # seconds
    cors_origins: tuple[str, ...] = ("*",)
    host: str = "127.0.0.1"
    port: int = 8080
    max_body: int = 1024 * 1024  # bytes
    argon2_time_cost: int = 2
    argon2_memory_cost: int = 19 * 1024  # KiB (OWASP minimum for argon2id)
    argon2_parallelism: int = 1
    log_format: str = "text"  # text | json
    login_failures: int = 5  # failed logins allowed per account and client in the window
    login_failures_per_client: int = 50  # per client, over every account, in the window
    login_window: int = 300  # seconds
    login_failures_per_account: int = 100  # per account an hour, from clients it does not know
    signups_per_client: int = 30  # signup attempts allowed per client in the signup window
    signup_window: int = 300  # seconds
    login_queue: int = 256  # logins that may wait for a password check (503 busy past it)
    signup_queue: int = 512  # signups that may wait for a password hash (503 busy past it)
    busy_timeout: int = 5000  # ms
    max_batch: int = 512  # commands per group commit
    allow_readable_ledger: bool = False  # serve a ledger file other users of the machine can read
    max_connections: int = 0  # open connections at most; 0: the open-file limit less a reserve
    trusted_proxies: tuple[str, ...] = ()  # reverse proxies whose X-Forwarded-For names the client
    signing_key: str | None = field(default=None, repr=False)  # Ed25519 seed; None: a key file
    origin: str | None = None  # the name checkpoints sign; None: the ledger's own, or a default

    @property
    def secret_file(self) -> Path | None:
        """Where the generated JWT secret is kept when none is configured (0600, beside the
        ledger file); None for a ledger that keeps no file (``memory:``)."""
        path = locate(self.db).path
        return None if path is None else path.with_name(path.name + ".jwt-secret")

    @property
    def signing_key_file(self) -> Path | None:
        """Where the generated checkpoint signing key is kept when none is configured (0600,
        beside the ledger file); None for a ledger that keeps no file."""
        path = locate(self.db).path
        return None if path is None else path.with_name(path.name + ".signing-key")

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None,
             environ: Mapping[str, str] | None = None) -> Settings:
        """Defaults, then ``VOTE_LEDGER_*`` variables, then explicit overrides (CLI flags)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _convert(f.name, raw)
        for key, value in (overrides or {}).items():
            if isinstance(value, Path):
                value = str(value)  # as a flag's text is
            if value is not None:
                values[key] = _convert(key, value) if isinstance(value, str) else value
        settings = replace(cls(), **values)
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse values that cannot work, with a message naming the setting."""
        try:
            locate(self.db)
        except UnknownBackendError as exc:
            raise SettingsError(str(exc)) from None
        if not 0 < self.port < 65536:
            raise SettingsError(f"port must be between 1 and 65535, not {self.port}")
        if self.log_format not in ("text", "json"):
            raise SettingsError("log format must be 'text' or 'json'")
        if self.busy_timeout < 0:
            raise SettingsError("busy_timeout must not be negative")
        if self.max_connections < 0:
            raise SettingsError("max_connections must not be negative (0: as the open-file limit allows)")
        for name in ("token_lifetime", "max_body", "argon2_time_cost", "argon2_memory_cost",
                     "argon2_parallelism", "login_failures", "login_failures_per_client",
                     "login_window", "login_failures_per_account", "signups_per_client",
                     "signup_window", "login_queue", "signup_queue", "max_batch"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be a positive integer")
        # one client alone must never reach the account's hourly limit, or it could hold back others
        alone = self.login_failures * math.ceil(3600 / self.login_window)
        if alone >= self.login_failures_per_account:
            raise SettingsError(
                f"login_failures ({self.login_failures}) in every login_window ({self.login_window} s) "
                f"lets one client fail {alone} times an hour, which must stay under "
                f"login_failures_per_account ({self.login_failures_per_account})"
            )
        if self.argon2_memory_cost < 8 * self.argon2_parallelism:
            raise SettingsError("argon2_memory_cost must be at least 8 KiB per lane of parallelism")
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise SettingsError(f"trusted_proxies: {proxy!r} is not an IP address or network") from None
        if self.jwt_secret is not None and len(self.jwt_secret) < 32:
            raise SettingsError(f"{PREFIX}JWT_SECRET must be at least 32 characters")
        if self.signing_key and self.jwt_secret and self.signing_key.strip() == self.jwt_secret.strip():
            raise SettingsError(f"{PREFIX}SIGNING_KEY must not be the JWT secret")
        if self.origin is not None and (not self.origin or any(c.isspace() or c == "+" for c in self.origin)):
            raise SettingsError(f"{PREFIX}ORIGIN must be a name without spaces or '+', not {self.origin!r}")


def _convert(name: str, raw: str) -> Any:
    kind = {f.name: f.type for f in fields(Settings)}.get(name)
    if kind is None:
        raise SettingsError(f"unknown setting {name!r}")
    if kind == "bool":
        return _boolean(name, raw)
    try:
        if kind == "int":
            return int(raw)
        if kind in ("Path", "Path | None"):
            return Path(raw)
        if kind == "tuple[str, ...]":
            return tuple(part.strip() for part in raw.split(",") if part.strip())
    except ValueError:
        raise SettingsError(f"{PREFIX}{name.upper()} must be an integer, not {raw!r}") from None
    return raw


def _boolean(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{PREFIX}{name.upper()} must be 1 or 0 (true or false), not {raw!r}")
