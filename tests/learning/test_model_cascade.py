"""The model's building blocks without the database: feature replay and the Monte Carlo composition."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from core import ml_cascade
from core.features import GAP_FEATURES, FeatureBook, Outcome, Reading, plug_probability, replay
from core.gbm import QUANTILES
from core.physics import Trip

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


def test_a_renters_plugging_habit_is_the_share_of_their_returns_left_plugged_in():
    """Not an EMA of the returns: with alpha 0.3 the last return weighs 0.3 whatever came before, and a renter who
    plugged in two returns of these six read 0.32, or 0.51 had the two been the last."""
    plugged = [True, False, False, True, False, False]
    history = [_outcome("c0", "u0", -1, 80.0, 60.0, charging=True)]  # the car can charge: every return counts
    history += [_outcome("c0", "u1", day, 80.0, 60.0, charging=c) for day, c in enumerate(plugged)]

    _, _, book = replay(history)
    renter = book.renter("u1")

    assert renter.plug == pytest.approx(2 / 6)
    car = book.car("c0")
    assert plug_probability(car, renter, fleet_plug=0.5) == pytest.approx((6 * 2 / 6 + 2 * 0.5) / 8)


def test_a_renters_habit_counts_only_returns_to_cars_that_can_charge():
    """A car left unplugged where it has no charger says nothing of the renter: a renter who always plugs in, and
    drove a charger-less car one return in four, would read as plugging in three returns in four."""
    history = [_outcome("other", "u0", 0, 80.0, 60.0, charging=True)]  # someone once charged car "other"
    cars = ["home", "home", "none", "other", "none"]
    plugged = [True, True, False, True, False]
    rides = enumerate(zip(cars, plugged, strict=True), start=1)
    history += [_outcome(car, "u1", day, 80.0, 60.0, charging=c) for day, (car, c) in rides]

    _, _, book = replay(history)
    renter = book.renter("u1")

    assert renter.trips == 5
    assert renter.plug_returns == 3 and renter.plug == pytest.approx(1.0)  # "none" never charged: not counted
    home = book.car("home")
    assert plug_probability(home, renter, fleet_plug=0.5) == pytest.approx((3 * 1.0 + 2 * 0.5) / 5)


def test_a_return_counts_for_the_habit_when_the_database_says_its_car_can_charge():
    """Serving replays a renter's outcomes alone, so it learns whether each car can charge from the outcome."""
    told = Outcome("c9", "u1", T0, T0 + timedelta(hours=2), 80.0, 60.0, False, car_chargeable=True)
    unknown = Outcome("c8", "u1", T0 + timedelta(days=1), T0 + timedelta(days=1, hours=2), 80.0, 60.0, False)

    _, _, book = replay([told, unknown])

    assert book.renter("u1").plug_returns == 1 and book.renter("u1").plug == 0.0


def test_a_reading_inside_a_parked_gap_adds_a_row_from_it_to_the_pick_up():
    history = [_outcome("c1", "u1", 0, 90.0, 70.0), _outcome("c1", "u1", 1, 68.0, 28.0)]
    returned = history[0].end  # day 0, 10:00
    readings = [
        Reading("c1", returned, 70.0),  # the return itself: the gap's own start, no extra row
        Reading("c1", returned + timedelta(hours=6), 69.0),  # mid-gap: a row from here
        Reading("c2", returned + timedelta(hours=6), 10.0),  # another car's
        Reading("c1", history[1].start + timedelta(hours=1), 60.0),  # during the next trip
    ]

    gaps, _, book = replay(history, readings)

    whole, mid = sorted(gaps, key=lambda row: row["since_return"])
    assert whole["since_return"] == 0.0 and whole["hours"] == 22.0 and whole["target"] == -2.0
    assert mid["since_return"] == 6.0 and mid["hours"] == 16.0
    assert mid["start_level"] == 69.0 and mid["target"] == -1.0
    assert mid["end"] == history[1].start  # known at the pick-up, like the whole gap
    assert book.car("c1").gaps == 1  # the car's rates learn from the whole gap only


def test_a_walk_from_a_reading_after_the_return_tells_the_gap_model_how_long_the_car_was_parked():
    book = FeatureBook()
    book.observe(_outcome("c1", "u1", 0, 90.0, 25.0))  # returned low, day 0 at 10:00
    reading_at = T0 + timedelta(hours=14)  # 12 hours after the return
    trace = [
        ("gap", reading_at, reading_at + timedelta(hours=3), 24.0, 0.0, True),
        ("target", 0),
        ("trip", reading_at + timedelta(hours=3), reading_at + timedelta(hours=5), 24.0, _trip()),
        ("gap", reading_at + timedelta(hours=5), reading_at + timedelta(hours=9), 20.0, 0.0, True),
        ("target", 1),
    ]
    seen = _Recorder()

    ml_cascade.compose(seen, trace, car_id="c1", book=book, fleet_plug=0.3, start_std=0.0)

    since = GAP_FEATURES.index("since_return")
    first, later = seen.gap_rows[0, since], seen.gap_rows[-1, since]
    assert first == 12.0 and later == 0.0  # a gap after a future return starts at that return


class _Recorder:
    """A stand-in model that keeps the rows it was asked to price (and prices every change at 0)."""

    def __init__(self):
        outer = self

        class _Kind:
            def __init__(self, kind):
                self.kind = kind

            def quantiles(self, rows):
                setattr(outer, f"{self.kind}_rows", rows)
                return np.zeros((len(rows), len(QUANTILES)))

        self.gap, self.trip = _Kind("gap"), _Kind("trip")


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


def test_the_point_prediction_moves_off_an_empty_stretch_between_two_humps_only_when_it_costs_no_real_mae():
    rng = np.random.default_rng(5)
    # A car that will be at about 10 % or, if staff come, at about 90 %: the median falls between them.
    two_humps = np.concatenate([rng.uniform(8, 12, 296), rng.uniform(30, 70, 8), rng.uniform(86, 94, 296)])
    one_hump = rng.normal(50.0, 6.0, len(two_humps))
    samples = np.clip(np.stack([two_humps, one_hump]), 0.0, 100.0)
    medians = np.median(samples, axis=1)

    moved, kept = ml_cascade._likeliest(samples, medians)

    def mae(row, level):
        return np.mean(np.abs(row - level))

    def within_10(row, level):
        return np.mean(np.abs(row - level) <= 10)

    assert 30 < medians[0] < 70 and within_10(samples[0], medians[0]) < 0.05  # the median is a level nobody sees
    assert within_10(samples[0], moved) >= 0.45
    assert mae(samples[0], moved) <= mae(samples[0], medians[0]) * (1 + ml_cascade.MAE_SLACK)
    assert kept == medians[1]  # one hump: the median stays


def test_the_point_rule_gives_each_row_what_it_gives_that_row_alone():
    rng = np.random.default_rng(9)
    rows = [
        np.concatenate([rng.normal(10, 1, 270), rng.uniform(40, 100, 330)]),  # median on the wide side: kept
        np.concatenate([rng.uniform(8, 12, 296), rng.uniform(30, 70, 8), rng.uniform(86, 94, 296)]),
        rng.normal(60.0, 8.0, 600),
        np.concatenate([rng.normal(10, 1, 270), rng.uniform(40, 100, 330)]),
    ]
    samples = np.clip(np.stack(rows), 0.0, 100.0)
    medians = np.median(samples, axis=1)

    together = ml_cascade._likeliest(samples, medians)

    alone = [ml_cascade._likeliest(samples[[i]], medians[[i]])[0] for i in range(len(rows))]
    assert list(together) == alone
    for row, median, level in zip(samples, medians, together, strict=True):
        assert np.mean(np.abs(row - level)) <= np.mean(np.abs(row - median)) * (1 + ml_cascade.MAE_SLACK) + 1e-9
