"""The model's building blocks without the database: feature replay and the Monte Carlo composition."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np

from learning.features import FeatureBook, Outcome, replay
from learning.gbm import QUANTILES
from predictions import ml_cascade
from predictions.physics import Trip

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)


def _outcome(car: str, user: str, day: int, start: float, end: float, charging: bool = False) -> Outcome:
    at = T0 + timedelta(days=day)
    return Outcome(car, user, at, at + timedelta(hours=2), start, end, charging)


def test_replay_rows_see_only_earlier_outcomes():
    history = [
        _outcome("c1", "u1", 0, 90.0, 70.0),  # drains 10 points an hour
        _outcome("c1", "u1", 1, 68.0, 28.0),  # then 20
    ]

    gaps, trips, book = replay(history)

    assert math.isnan(trips[0]["car_drive"]) and math.isnan(trips[0]["renter_drive"])  # nothing learned yet
    assert trips[1]["car_drive"] == 10.0 and trips[1]["renter_drive"] == 10.0
    assert trips[1]["target"] == -40.0
    [gap] = gaps  # the parked stretch between the two bookings
    assert gap["start_level"] == 70.0 and gap["target"] == -2.0 and gap["hours"] == 22.0
    assert book.car("c1").drive == 10.0 + 0.3 * (20.0 - 10.0)  # the EMA after both


class _Flat:
    """A stand-in for a trained segment model: the same quantiles of change whatever the row says,
    except that rows starting at or below 20 % are recharged (+70) and the rest drain by 5."""

    def __init__(self, kind: str):
        self.kind = kind

    def quantiles(self, rows: np.ndarray) -> np.ndarray:
        start = rows[:, 1]  # start_level is the second feature of both kinds
        low = np.tile(np.linspace(65.0, 75.0, len(QUANTILES)), (len(rows), 1))
        high = np.tile(np.linspace(-6.0, -4.0, len(QUANTILES)), (len(rows), 1))
        return np.where((start <= 20.0)[:, None], low, high)


class _Model:
    gap = _Flat("gap")
    trip = _Flat("trip")


def test_each_sample_takes_the_change_at_its_own_starting_level():
    # Known at 40 %, a trip, then a parked gap: samples that end the trip low are recharged in the gap.
    trace = [
        ("trip", T0, T0 + timedelta(hours=2), 40.0, _trip()),
        ("gap", T0 + timedelta(hours=2), T0 + timedelta(hours=5), 35.0, 0.0, True),
        ("target", 0),
    ]
    [point] = ml_cascade.compose(_Model(), trace, car_id="c1", book=FeatureBook(), fleet_plug=0.3, start_std=0.0)

    # 40 - 5 = 35 after the trip (above 20: no recharge), 35 - 5 = 30 at the target.
    assert 28.0 <= point.lower <= point.level <= point.upper <= 32.0
    assert abs(point.level - 30.0) < 0.5

    low_trace = [(*trace[0][:3], 22.0, trace[0][4]), (*trace[1][:3], 17.0, *trace[1][4:]), trace[2]]
    [low] = ml_cascade.compose(_Model(), low_trace, car_id="c1", book=FeatureBook(), fleet_plug=0.3, start_std=0.0)
    # 22 - 5 = 17 after the trip: recharged by about 70 in the gap.
    assert 84.0 <= low.level <= 90.0


def _trip() -> Trip:
    return Trip("B1", T0, T0 + timedelta(hours=2), 8.0, 2.0, 0.0, user_id="u1")
