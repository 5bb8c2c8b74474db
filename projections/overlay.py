"""A scratch state for deciding one batch: the live state plus the batch's own changes.

Commands of a batch must see the effects of the commands before them, but readers must not see
anything until the batch commits. The scratch state layers copy-on-read maps over the live ones, so
the very same fold (``LedgerState.apply``) runs on it without touching the live objects.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import replace
from typing import Any, Generic, TypeVar

from projections.model import Poll
from projections.state import LedgerState

_MISSING: Any = object()
_GONE: Any = object()  # a key this layer deleted: absent here, whatever the base holds
K = TypeVar("K")
V = TypeVar("V")


class Layer(MutableMapping[K, V], Generic[K, V]):
    """A dict layered over ``base``: writes stay here; reads copy a base value here first."""

    def __init__(self, base: dict[K, V], copier: Callable[[V], V] | None = None) -> None:
        self.base = base
        self.own: dict[K, V] = {}
        self._copier = copier

    def __getitem__(self, key: K) -> V:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value  # type: ignore[no-any-return]

    def get(self, key: K, default: Any = None) -> Any:
        """The value here, else a copy of the base's (kept here), else ``default``; no KeyError is
        raised and caught on a miss."""
        value = self.own.get(key, _MISSING)
        if value is _GONE:
            return default
        if value is not _MISSING:
            return value
        value = self.base.get(key, _MISSING)
        if value is _MISSING:
            return default
        if self._copier is not None:
            value = self.own[key] = self._copier(value)
        return value

    def __setitem__(self, key: K, value: V) -> None:
        self.own[key] = value

    def __delitem__(self, key: K) -> None:
        if key not in self:
            raise KeyError(key)
        self.own[key] = _GONE

    def __contains__(self, key: object) -> bool:
        value = self.own.get(key, _MISSING)  # type: ignore[arg-type]
        return value is not _GONE and (value is not _MISSING or key in self.base)

    def __iter__(self) -> Iterator[K]:
        yield from (k for k, v in self.own.items() if v is not _GONE)
        yield from (k for k in self.base if k not in self.own)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _copy_poll(poll: Poll) -> Poll:
    return replace(poll, candidates={k: copy.copy(c) for k, c in poll.candidates.items()})


def scratch(state: LedgerState) -> LedgerState:
    """A state that reads through to ``state`` and keeps every change to itself."""
    layered: Any = LedgerState(
        head_seq=state.head_seq,
        head_hash=state.head_hash,
        users=Layer(state.users),  # type: ignore[arg-type]
        users_by_email=Layer(state.users_by_email),  # type: ignore[arg-type]
        polls=Layer(state.polls, _copy_poll),  # type: ignore[arg-type]
        candidates=Layer(state.candidates),  # type: ignore[arg-type]
        ballots=Layer(state.ballots, copy.copy),  # type: ignore[arg-type]
        idempotency=Layer(state.idempotency),  # type: ignore[arg-type]
        revoked_tokens=Layer(state.revoked_tokens),  # type: ignore[arg-type]
        legacy_poll_id=state.legacy_poll_id,
    )
    result: LedgerState = layered
    return result


def touched(mapping: MutableMapping[K, V]) -> dict[K, V]:
    """What a scratch map holds of its own (everything the batch added or changed; projection
    tables keep every record, so none of these maps has a key deleted)."""
    return mapping.own if isinstance(mapping, Layer) else dict(mapping)
