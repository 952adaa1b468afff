"""Objects this process keeps for a few seconds under a key, as they are: not pickled, not shared.

Why not Django's cache: its local-memory backend pickles every value it stores and unpickles it on every read, so
that a caller cannot change what the next one reads. The fleet-wide tables every prediction reads (interval margins,
readiness recalibration, shadow scores, the fleet prior) were unpickled several times a prediction: about 4 % of a
predict worker's CPU (docs/performance.md). And a shared cache (CACHE_URL on Redis) would turn each read into a round
trip, where these are meant to be per process anyway (their docstrings say for how long).

What is kept here is read, never changed: a caller that wants to change a value copies it first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
_kept: dict[str, tuple[float, Any]] = {}  # key -> (expires at, by time.time(), value)


def kept_or_computed(key: str, compute: Callable[[], T], seconds: float) -> T:
    """The value kept under `key`, or `compute()` kept for `seconds` from now."""
    found = _kept.get(key)
    now = time.time()  # the wall clock, as Django's cache: tests move it with time_machine
    if found is not None and found[0] > now:
        return found[1]
    value = compute()
    _kept[key] = (now + seconds, value)
    return value


def kept(key: str) -> Any | None:
    """The value kept under `key`, or None if nothing is or it expired."""
    found = _kept.get(key)
    return found[1] if found is not None and found[0] > time.time() else None


def keep(key: str, value: Any, seconds: float) -> None:
    _kept[key] = (time.time() + seconds, value)


def forget(key: str) -> None:
    _kept.pop(key, None)


def forget_all() -> None:
    _kept.clear()
