"""Passwords (argon2id, hashed off the event loop) and JWTs (PyJWT, HS256 pinned)."""

from __future__ import annotations

import json
import os
import secrets
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import jwt
import msgspec
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from jwt.algorithms import HMACAlgorithm

from api.errors import ApiError
from api.hashing import LOGIN, SIGNUP, WorkQueues
from api.settings import PREFIX, Settings, SettingsError
from ledger.open import locate
from projections.model import User
from projections.state import LedgerState


class Claims(msgspec.Struct):
    """The claims a token must carry (others are ignored), as RFC 7519 NumericDates: integers only.

    PyJWT checks their values against the clock but reads them with ``int()``, which a string, a
    float or ``true`` would pass; converting to this refuses them.
    """

    sub: str
    exp: int
    iat: int
    nbf: int | msgspec.UnsetType = msgspec.UNSET
    jti: str | None = None  # the token's own id, which a logout names
    gen: int = 0  # the user's logouts from everywhere when it was issued


_ALGORITHM = "HS256"
_CLAIMS = msgspec.json.Decoder(Claims)


class _HS256ForOneSecret(HMACAlgorithm):
    """PyJWT's HS256 for the service's one secret.

    PyJWT checks the key it is given (that it is no PEM, SSH or DER key, which an HMAC must not
    use) at every token it verifies: 8 µs of each. The secret is checked once, here, instead.
    """

    def __init__(self, secret: str) -> None:
        super().__init__(HMACAlgorithm.SHA256)
        self._secret = secret
        self._prepared = super().prepare_key(secret)

    def prepare_key(self, key: str | bytes) -> bytes:
        return self._prepared if key == self._secret else super().prepare_key(key)


def _invalid() -> ApiError:
    return ApiError(401, "invalid_token", "the token is not valid")


def normalize_email(email: str) -> str:
    """The form under which emails are unique: NFKC, trimmed, case-folded.

    NFKC folds compatibility look-alikes (full-width letters, ligatures) into one spelling, so
    a full-width ``alice@example.com`` and ``alice@example.com`` are the same account.
    """
    return unicodedata.normalize("NFKC", email).strip().casefold()


def load_or_create_secret(settings: Settings) -> str:
    """The JWT secret: the configured one, or one generated once and kept in a 0600 file."""
    if settings.jwt_secret:
        return settings.jwt_secret
    path = settings.secret_file
    if path is None and locate(settings.db).shared:
        raise SecretError(
            f"a ledger several nodes serve needs one secret for all of them: set {PREFIX}JWT_SECRET"
        )
    if path is None:  # a ledger kept in memory: its tokens need outlive it no more than it does
        return secrets.token_urlsafe(48)
    if not path.exists():
        # written whole under a temporary name, then linked into place: a crash or a second
        # process starting at the same moment never sees a half-written key
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_urlsafe(48) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process won the race: use its key
        finally:
            temporary.unlink()
    secret = path.read_text(encoding="ascii").strip()
    if len(secret) < 32:
        raise SecretError(f"{path} holds no usable JWT secret; remove it to have a new one generated")
    if path.stat().st_mode & 0o077:
        raise SecretError(f"{path} is readable by others; chmod 600 it")
    return secret


class SecretError(SettingsError):
    """The JWT secret file cannot be used."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a valid token speaks for, and the token's own id (None for a token that has none)."""

    user: User
    token_id: str | None = None


def extract_token(value: str | None) -> str | None:
    """The token from an ``Authorization`` value: bare, ``Bearer <t>``, or a JSON-quoted string."""
    if value is None:
        return None
    token = value.strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    if len(token) >= 2 and token[0] == token[-1] == '"':
        try:
            decoded = json.loads(token)
        except ValueError:
            return None
        token = decoded.strip() if isinstance(decoded, str) else ""
        if token[:7].lower() == "bearer ":
            token = token[7:].strip()
    return token or None


class Passwords:
    """argon2id hashing and checking, in worker threads so the event loop keeps serving.

    Checks (logins) go ahead of hashes (signups). ``queues`` bounds how many of each may wait
    (``HashingBusyError`` past it); None, as for the commands, lets any number wait.
    """

    def __init__(
        self, settings: Settings, queues: Mapping[str, int] | None = None, workers: int | None = None
    ) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_cost,
            parallelism=settings.argon2_parallelism,
            type=Type.ID,
        )
        # by default one core fewer than the machine has: the event loop keeps one to itself while
        # a burst of signups hashes
        workers = workers or max(1, (os.cpu_count() or 2) - 1)
        limits = {kind: (queues or {}).get(kind) for kind in (LOGIN, SIGNUP)}
        self._work = WorkQueues(workers, limits, "argon2")
        # Checked when the email is unknown, so that a miss costs as much as a wrong password.
        self._dummy_hash = self._hasher.hash(secrets.token_hex(16))

    async def hash_password(self, password: str) -> str:
        """An argon2id hash, computed in a worker thread so the event loop keeps serving."""
        return await self._work.run(SIGNUP, self._hasher.hash, password)

    async def check_password(self, password_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches; a missing hash (unknown user) costs the same and fails."""
        stored = password_hash or self._dummy_hash
        try:
            ok: bool = await self._work.run(LOGIN, self._hasher.verify, stored, password)
        except (VerificationError, InvalidHashError):
            return False
        return ok and password_hash is not None

    def close(self) -> None:
        self._work.close()


TOKEN_CACHE_SIZE = 10_000
"""Verified tokens kept, to skip PyJWT on a token's next request. At 100,000 the cache grew the
server by 43 MiB under a bench of distinct voters; 10,000 covers the users active at once."""


class VerifiedTokens:
    """Tokens that passed verification, with their user id and ``exp``.

    On every request after a token's first, ``verify`` costs 1.2 µs instead of about 21 µs (18 µs
    of them in ``_decode``). Only tokens that passed are kept, each is checked against the clock
    again at every use, and past ``size`` the oldest goes first (tokens share one lifetime, so it
    is also the nearest to expiry).
    """

    def __init__(self, size: int = TOKEN_CACHE_SIZE) -> None:
        self._size = size
        self._entries: OrderedDict[str, Claims] = OrderedDict()

    def get(self, token: str, now: float) -> Claims | None:
        """The claims of a kept token still valid at ``now``; None otherwise."""
        claims = self._entries.get(token)
        if claims is None:
            return None
        if claims.exp <= now:
            del self._entries[token]
            return None
        return claims

    def put(self, token: str, claims: Claims) -> None:
        self._entries[token] = claims
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class Authenticator(Passwords):
    """Passwords, and the tokens that a right password earns: issued and verified here."""

    def __init__(self, settings: Settings, secret: str) -> None:
        try:
            algorithm = _HS256ForOneSecret(secret)
        except jwt.InvalidKeyError as exc:
            raise SecretError(f"the JWT secret cannot be used: {exc}") from None
        super().__init__(settings, {LOGIN: settings.login_queue, SIGNUP: settings.signup_queue})
        self._secret = secret
        self._jws = jwt.PyJWS(algorithms=[])  # HS256 only, and as registered here
        self._jws.register_algorithm(_ALGORITHM, algorithm)
        self._lifetime = settings.token_lifetime
        self._verified = VerifiedTokens()

    def issue(self, user: User) -> str:
        """A signed token carrying ``sub`` (the user id), ``email``, ``iat``, ``exp``, its own id
        (``jti``, for a logout) and the user's logouts from everywhere so far (``gen``)."""
        now = int(time.time())
        claims = {
            "sub": user.user_id, "email": user.email, "iat": now, "exp": now + self._lifetime,
            "jti": secrets.token_hex(16), "gen": user.generation,
        }
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    @property
    def lifetime(self) -> int:
        return self._lifetime

    def verify(self, header: str | None, state: LedgerState) -> Identity:
        """The identity behind an ``Authorization`` value; ApiError 401 for anything not valid."""
        token = extract_token(header)
        if token is None:
            raise ApiError(401, "missing_token", "log in first: send the token in Authorization")
        if not token.isascii():
            raise _invalid()
        claims = self._verified.get(token, time.time())
        if claims is None:
            claims = self._decode(token)
            self._verified.put(token, claims)
        user = state.users.get(claims.sub)
        if user is None or user.erased:
            raise ApiError(401, "invalid_token", "the token names a user this ledger does not know")
        if claims.gen < user.generation or (claims.jti is not None and claims.jti in state.revoked_tokens):
            raise ApiError(401, "token_revoked", "this token was logged out; log in again")
        return Identity(user, claims.jti)

    def _decode(self, token: str) -> Claims:
        """Verify an HS256 JWT with PyJWT and return its claims; ApiError 401 otherwise.

        PyJWT's JWS layer checks the segments, the header and the signature, with only HS256
        allowed, so ``none`` and every other algorithm are refused. The payload is then read once,
        straight into ``Claims`` (``sub``, ``iat`` and ``exp`` required, NumericDates as integers),
        and its times checked as ``jwt.decode`` checks them, with no leeway: a token whose ``iat``
        or ``nbf`` is still to come is refused, and one at or past its ``exp`` is
        ``token_expired``. ``jwt.decode`` would parse the payload with ``json`` and check the
        claims by name before they were typed, and check the key at every token: 34 µs a token,
        against 18 µs this way.
        """
        if "=" in token:
            # PyJWT accepts padded segments; a compact JWS has none (RFC 7515), and one spelling
            # per token keeps one cache entry per token
            raise _invalid()
        try:
            signed = self._jws.decode_complete(token, self._secret, algorithms=[_ALGORITHM])
            claims = _CLAIMS.decode(signed["payload"])
        except (jwt.PyJWTError, msgspec.DecodeError):
            raise _invalid() from None
        now = time.time()
        if claims.exp <= now:
            raise ApiError(401, "token_expired", "the token has expired; log in again")
        if claims.iat > now or (claims.nbf is not msgspec.UNSET and claims.nbf > now):
            raise _invalid()
        return claims
