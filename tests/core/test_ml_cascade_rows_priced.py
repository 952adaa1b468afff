"""The model cascade prices no segment after its last target, and its figures are those of moving through them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from core import ml_cascade
from core.features import FeatureBook, Outcome
from core.gbm import QUANTILES
from core.physics import Rates, State, Trip, walk

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
RATES = Rates(0.3, 0.1, 12.0, 4.0, 8.0, 4.0, 0.4)


class _Counting:
    """A stand-in segment model whose quantiles depend on every column of the row (missing ones as 0), so that a
    row priced wrong, or the wrong row read, would show; it counts the rows it was asked to price."""

    def __init__(self, kind: str, seed: int):
        self.kind = kind
        self.weights = np.random.default_rng(seed).normal(0.0, 0.05, (40, len(QUANTILES)))
        self.rows = 0

    def quantiles(self, rows: np.ndarray) -> np.ndarray:
        self.rows += len(rows)
        x = np.nan_to_num(rows)
        raw = np.stack([(x * w).sum(axis=1) for w in self.weights[: rows.shape[1]].T], axis=1)
        return np.sort(raw + np.linspace(-20.0, 20.0, len(QUANTILES)), axis=1)


class _Model:
    def __init__(self):
        self.gap, self.trip = _Counting("gap", 1), _Counting("trip", 2)


def _trace(bookings: int, targets: int, charging: bool) -> list[tuple]:
    trips = [
        Trip(f"B{i}", T0 + timedelta(hours=5 + 9 * i), T0 + timedelta(hours=8 + 9 * i), 12.0, 5.0, 0.5, f"u{i % 3}")
        for i in range(bookings)
    ]
    trace: list[tuple] = []
    wanted = [(t.booking_id, t.start) for t in trips[:targets]]
    walk(State(level=55.0, at=T0, charging=charging), trips, wanted, RATES, trace=trace)
    return trace


def _book() -> FeatureBook:
    book = FeatureBook()
    for day in range(4):
        at = T0 - timedelta(days=4 - day)
        book.observe(Outcome("c1", f"u{day % 3}", at, at + timedelta(hours=2), 80.0, 60.0 - 5 * day, day % 2 == 0))
    return book


@pytest.mark.parametrize(("bookings", "targets"), [(2, 1), (5, 2), (8, 3)])
@pytest.mark.parametrize("start_std", [0.0, 4.0])
@pytest.mark.parametrize("charging", [False, True])
def test_segments_after_the_last_target_are_not_priced_and_change_no_figure(bookings, targets, start_std, charging):
    trace = _trace(bookings, targets, charging)
    assert trace[-1][0] != "target"  # segments follow the last target
    # The same trace with one more target at its very end: every segment is priced and moved through, and the
    # random draws are the same (a target is not a move).
    through = [*trace, ("target", targets)]
    kwargs = {"car_id": "c1", "book": _book(), "fleet_plug": 0.4, "start_std": start_std}

    short, short_model = ml_cascade.compose(model := _Model(), trace, **kwargs), model
    full, full_model = ml_cascade.compose(model := _Model(), through, **kwargs), model

    assert len(short) == targets and len(full) == targets + 1
    assert short == full[:targets]
    assert short_model.gap.rows + short_model.trip.rows < full_model.gap.rows + full_model.trip.rows


def test_a_single_booking_prices_no_trip():
    trace = _trace(1, 1, charging=False)  # a parked gap to the pick-up, then the booking's own trip
    model = _Model()

    [point] = ml_cascade.compose(model, trace, car_id="c1", book=_book(), fleet_plug=0.4, start_std=0.0)

    assert model.trip.rows == 0 and model.gap.rows > 0
    assert point.lower <= point.level <= point.upper
