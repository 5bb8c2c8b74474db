"""Limits on what one client, or everyone together, may try: failed logins, and signups.

All of it is kept in memory, per process: a restart forgets it, and several nodes each keep their own.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Hashable

from api.settings import Settings

ACCOUNT_WINDOW = 3600  # seconds: failed guesses at one account are counted over an hour (NIST SP 800-63B)
KNOWN_FOR = 30 * 24 * 3600  # seconds a client stays known to an account after logging in to it
KNOWN_PER_ACCOUNT = 8  # clients remembered per account: the most recent
MAX_KEYS = 100_000  # past this many keys, those with nothing left in their window are dropped


def _retry_after(wait: float) -> int:
    """A wait in whole seconds for ``Retry-After`` (0: none)."""
    return math.ceil(wait) if wait > 0 else 0


class Windows:
    """Events per key within a sliding window of ``window`` seconds, at most ``limit`` of them."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._times: dict[Hashable, deque[float]] = {}

    def wait(self, key: Hashable, now: float) -> float:
        """Seconds until ``key`` is under its limit again (0: it is)."""
        times = self._recent(key, now)
        return times[0] + self.window - now if len(times) >= self.limit else 0.0

    def add(self, key: Hashable, now: float) -> None:
        self._recent(key, now).append(now)
        if len(self._times) > MAX_KEYS:
            cutoff = now - self.window
            self._times = {k: v for k, v in self._times.items() if v and v[-1] > cutoff}

    def take_back(self, key: Hashable, at: float) -> None:
        """Forget the event added at ``at`` (it did not happen after all)."""
        times = self._times.get(key)
        if times is not None and at in times:
            times.remove(at)

    def clear(self, key: Hashable) -> None:
        self._times.pop(key, None)

    def _recent(self, key: Hashable, now: float) -> deque[float]:
        times = self._times.setdefault(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times


class LoginThrottle:
    """Failed logins, limited so that online guessing stays slow and nobody can lock a user out.

    Three limits, each a sliding window:

    - per account **and** client: ``login_failures`` in ``login_window`` (5 in 5 minutes) — what
      stops one client guessing at one account. A login that succeeds clears it.
    - per client, over every account: ``login_failures_per_client`` in ``login_window`` (50).
    - per account, from every client together: ``login_failures_per_account`` an hour (100, NIST SP
      800-63B §5.2.2). It holds back only clients that are not *known* to the account: those that
      logged in to it in the last 30 days go on past it (OWASP's "device cookie" idea, keyed by the
      client's address), so guesses from many addresses stop at 100 an hour without shutting out
      the owner's own devices.

    The settings are refused unless one client alone stays under the account's limit
    (``Settings.check``): then a client guessing from one address can never hold back anyone at
    another, known or not. An attempt counts against its account (and account and client) from
    the moment it is let through until its password is found right, so concurrent guesses at one
    account cannot slip past its limits together. Against its client only a wrong password counts:
    many people logging in at once from behind one address are not a failure until they fail.
    """

    def __init__(self, settings: Settings) -> None:
        window = settings.login_window
        self._pair = Windows(settings.login_failures, window)
        self._client = Windows(settings.login_failures_per_client, window)
        self._account = Windows(settings.login_failures_per_account, ACCOUNT_WINDOW)
        self._known: OrderedDict[str, OrderedDict[str, float]] = OrderedDict()

    def retry_after(self, account: str, client: str) -> int:
        """Seconds ``client`` must wait before trying ``account`` again (0: go ahead)."""
        now = time.monotonic()
        wait = max(self._pair.wait((account, client), now), self._client.wait(client, now))
        if not self._is_known(account, client, now):
            wait = max(wait, self._account.wait(account, now))
        return _retry_after(wait)

    def attempt(self, account: str, client: str) -> float:
        """Count an attempt at ``account`` as a failure until ``succeeded`` takes it back; its mark."""
        now = time.monotonic()
        self._pair.add((account, client), now)
        self._account.add(account, now)
        return now

    def failed(self, client: str) -> None:
        """An attempt had the wrong password: it counts against its client too."""
        self._client.add(client, time.monotonic())

    def withdraw(self, account: str, client: str, mark: float) -> None:
        """The attempt at ``mark`` never had its password checked: it counts for nothing."""
        self._pair.take_back((account, client), mark)
        self._account.take_back(account, mark)

    def succeeded(self, account: str, client: str, mark: float) -> None:
        """The attempt at ``mark`` had the right password: it was no failure, the pair's earlier
        failures are forgiven, and the client is known to the account from now on."""
        self._pair.clear((account, client))
        self._account.take_back(account, mark)
        known = self._known.setdefault(account, OrderedDict())
        known[client] = time.monotonic()
        known.move_to_end(client)
        self._known.move_to_end(account)
        while len(known) > KNOWN_PER_ACCOUNT:
            known.popitem(last=False)
        while len(self._known) > MAX_KEYS:
            self._known.popitem(last=False)

    def _is_known(self, account: str, client: str, now: float) -> bool:
        known = self._known.get(account)
        since = known.get(client) if known is not None else None
        return since is not None and now - since < KNOWN_FOR


class SignupThrottle:
    """Signups per client: ``signups_per_client`` attempts in ``signup_window`` (30 in 5 minutes).

    Every attempt with valid fields counts, the ones answered 409 too: the 409 that the 2020
    contract gives a taken email tells who is registered, and this is what keeps a client from
    asking about more than a few dozen emails every few minutes. It also keeps one client from
    filling the queue of signups waiting for a hash.
    """

    def __init__(self, settings: Settings) -> None:
        self._clients = Windows(settings.signups_per_client, settings.signup_window)

    def attempt(self, client: str) -> int:
        """Seconds to wait before signing up again (0: go ahead, and this attempt is counted)."""
        now = time.monotonic()
        wait = self._clients.wait(client, now)
        if wait > 0:
            return _retry_after(wait)
        self._clients.add(client, now)
        return 0
