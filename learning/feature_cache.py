"""The model features of a car and of its renters, kept per process between predictions until they learn more.

Why: every prediction a champion prices replays the last HISTORY outcomes of the car and of each renter
(`learning.selectors.feature_book_for`): two queries and up to a few hundred rows turned into feature states, a
fifth of a real-time `/predict` (docs/performance.md), though a car's states change only when it returns.

When a kept state is still right: each new outcome moves its car's and its renter's pattern on
(`learning.services.patterns_learn_from_outcome` counts it in `total_bookings` and saves the row, which sets
`updated_at`), so a state kept under the pattern's (row, `total_bookings`, `updated_at`) is the replay of the same
outcomes. A car or a renter without a pattern has no outcome (an outcome's own signal makes both patterns in its
transaction), so `learning.selectors.feature_book_for` gives it the empty state without asking the database; an
outcome written without its signal (a bulk import) is not seen until its pattern exists.

Each car and renter has one entry, its latest state (a newer version replaces the older), and the caches are bounded
(least recently used first out), so a worker's memory stays flat however large the fleet and however long it runs.
The states are never changed after they are built: pricing only reads them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

from core.features import CarState, RenterState

STATES_KEPT = 4096  # cars, and renters, per process: about a kilobyte each

State = TypeVar("State", CarState, RenterState)


class _Kept(OrderedDict):
    """Each car's (or renter's) latest state under its pattern's row, with the version it was built at: a newer
    version replaces it, so superseded states are not kept until they age out."""

    def take(self, key: tuple) -> object | None:
        row, version = key[0], key[1:]
        kept = self.get(row)
        if kept is None or kept[0] != version:
            return None
        self.move_to_end(row)
        return kept[1]

    def keep(self, key: tuple, state: object) -> None:
        row, version = key[0], key[1:]
        self[row] = (version, state)
        self.move_to_end(row)
        while len(self) > STATES_KEPT:
            self.popitem(last=False)


_cars = _Kept()
_renters = _Kept()


def pattern_key(pattern: object | None) -> tuple | None:
    """What a car's or a renter's outcomes are kept under: its pattern's row, then the version of what it learned
    (`total_bookings`, `updated_at`); None (not kept) without a pattern."""
    if pattern is None:
        return None
    return (pattern.pk, pattern.total_bookings, pattern.updated_at)


def car_state(key: tuple | None, build: Callable[[], CarState]) -> CarState:
    """The car's state kept under `key`, else `build()` (kept when there is a key)."""
    return _state(_cars, key, build)


def renter_states(
    keys: dict[str, tuple | None], build: Callable[[list[str]], dict[str, RenterState]]
) -> dict[str, RenterState]:
    """Each renter's state kept under its key; the others from one `build(user_ids)` (then kept)."""
    states: dict[str, RenterState] = {}
    for user_id, key in keys.items():
        kept = _renters.take(key) if key is not None else None
        if kept is not None:
            states[user_id] = kept
    missing = sorted(set(keys) - set(states))
    if missing:
        built = build(missing)
        for user_id in missing:
            state = built.get(user_id, RenterState())
            states[user_id] = state
            if keys[user_id] is not None:
                _renters.keep(keys[user_id], state)
    return states


def _state(kept: _Kept, key: tuple | None, build: Callable[[], State]) -> State:
    if key is not None and (state := kept.take(key)) is not None:
        return state
    state = build()
    if key is not None:
        kept.keep(key, state)
    return state


def feature_states_forget() -> None:
    """Drop every kept state (tests, and a process that rewrote outcomes behind the patterns' back)."""
    _cars.clear()
    _renters.clear()
