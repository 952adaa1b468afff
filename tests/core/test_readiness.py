"""core.readiness: the chance of having the needed level at pick-up, read from a stored level and 95 % interval."""

import random
from datetime import UTC, datetime, timedelta

import pytest

from core.physics import charge_hours, charge_level
from core.readiness import (
    PIT_BINS,
    LevelDistribution,
    PitCalibration,
    Requirement,
    charge_for_deadline,
    charge_needed,
    probability_ready,
    readiness_assess,
    requirement_for_distance,
)

PICKUP = datetime(2025, 11, 3, 19, 0, tzinfo=UTC)


def p(level: float, lower: float, upper: float, required: float, std: float = 0.0) -> float:
    return probability_ready(LevelDistribution.from_interval(level, lower, upper), Requirement(required, std))


def test_a_symmetric_interval_is_calibrated_at_its_median_and_its_bounds():
    assert p(60.0, 40.0, 80.0, 60.0) == pytest.approx(0.5)
    assert p(60.0, 40.0, 80.0, 40.0) == pytest.approx(0.975, abs=1e-4)
    assert p(60.0, 40.0, 80.0, 80.0) == pytest.approx(0.025, abs=1e-4)


def test_an_asymmetric_interval_keeps_each_sides_coverage():
    # A long upper side (the car may have been plugged in): 2.5 % below lower, 2.5 % above upper, half below level.
    assert p(50.0, 45.0, 90.0, 45.0) == pytest.approx(0.975, abs=1e-4)
    assert p(50.0, 45.0, 90.0, 90.0) == pytest.approx(0.025, abs=1e-4)
    assert p(50.0, 45.0, 90.0, 50.0) == pytest.approx(0.5)
    assert p(50.0, 45.0, 90.0, 60.0) > p(50.0, 45.0, 70.0, 60.0)


def test_a_higher_requirement_is_never_likelier():
    probabilities = [p(55.0, 38.0, 81.0, r) for r in range(0, 101, 5)]
    assert probabilities == sorted(probabilities, reverse=True)
    assert probabilities[0] == 1.0 and probabilities[-1] < 0.01


def test_a_full_car_meets_a_requirement_of_100_and_an_empty_requirement_is_always_met():
    assert p(100.0, 100.0, 100.0, 100.0) == 1.0
    assert p(100.0, 90.0, 100.0, 100.0) == pytest.approx(0.5)  # half its mass is at the ceiling, which counts
    assert p(3.0, 0.0, 9.0, 0.0) == 1.0


def test_an_interval_clipped_at_empty_borrows_the_wider_upper_spread():
    clipped = LevelDistribution.from_interval(4.0, 0.0, 20.0)
    assert clipped.sd_lower == pytest.approx(16.0 / 1.959964)
    assert p(4.0, 0.0, 20.0, 2.0) < p(4.0, 2.04, 20.0, 2.0)  # cautious: less sure than the clipped side says


def test_the_requirements_own_spread_adds_to_the_levels():
    without = p(60.0, 40.0, 80.0, 40.0)
    with_spread = p(60.0, 40.0, 80.0, 40.0, std=10.0)
    assert with_spread < without
    combined = (10.0**2 + 10.204**2) ** 0.5  # sd of (level - requirement) for a symmetric interval
    from statistics import NormalDist

    assert with_spread == pytest.approx(1 - NormalDist().cdf(-20.0 / combined), abs=1e-3)


def test_a_distance_needs_distance_times_drain_with_the_variance_growing_with_its_square():
    short, long = requirement_for_distance(50.0, 0.3, 0.05), requirement_for_distance(100.0, 0.3, 0.05)
    assert (short.level, short.std) == pytest.approx((15.0, 2.5))
    assert (long.level, long.std) == pytest.approx((30.0, 5.0))
    assert long.std**2 == pytest.approx(4 * short.std**2)


@pytest.mark.parametrize(("required", "std", "threshold"), [(50.0, 0.0, 0.9), (70.0, 4.0, 0.9), (30.0, 0.0, 0.4)])
def test_charge_needed_brings_the_probability_to_the_threshold(required, std, threshold):
    dist = LevelDistribution.from_interval(45.0, 30.0, 65.0)
    requirement = Requirement(required, std)
    assert probability_ready(dist, requirement) < threshold or threshold < 0.5
    needed = charge_needed(dist, requirement, threshold)
    if probability_ready(dist, requirement) >= threshold:
        assert needed == 0.0
        return
    assert probability_ready(dist.shifted(needed), requirement) >= threshold
    assert probability_ready(dist.shifted(needed - 0.05), requirement) < threshold  # and not much more


def test_charge_hours_inverts_the_charging_curve_with_its_taper():
    for start, target in [(20.0, 60.0), (70.0, 90.0), (85.0, 95.0)]:
        hours = charge_hours(start, target, 12.0)
        assert charge_level(start, 12.0, hours) == pytest.approx(target, abs=1e-6)
    assert charge_hours(70.0, 90.0, 12.0) > 20.0 / 12.0  # slower than linear above 80 %
    assert charge_hours(50.0, 100.0, 12.0) == float("inf")
    assert charge_hours(50.0, 85.0, 12.0, ceiling=80.0) == float("inf")
    assert charge_hours(50.0, 40.0, 12.0) == 0.0


def test_plug_in_by_leaves_the_hours_the_charge_takes_and_is_empty_when_not_needed_or_too_late():
    common = {"level": 40.0, "lower": 30.0, "upper": 50.0, "threshold": 0.9, "pickup": PICKUP, "charge_rate": 10.0}
    early = PICKUP - timedelta(days=1)
    ready = readiness_assess(requirement=Requirement(20.0), present=early, **common)
    assert (ready.at_risk, ready.charge_needed, ready.plug_in_by) == (False, 0.0, None)

    risky = readiness_assess(requirement=Requirement(45.0), present=early, **common)
    assert risky.at_risk and risky.charge_needed > 5.0
    hours = charge_hours(40.0, 40.0 + risky.charge_needed, 10.0)
    assert 0 <= (PICKUP - risky.plug_in_by).total_seconds() - hours * 3600 < 60  # rounded down to the minute
    assert risky.plug_in_by.second == 0 and risky.plug_in_by <= PICKUP - timedelta(hours=hours)

    too_late = readiness_assess(requirement=Requirement(45.0), present=PICKUP - timedelta(minutes=5), **common)
    assert too_late.at_risk and too_late.plug_in_by is None
    beyond_full = readiness_assess(requirement=Requirement(99.0), present=early, **common)
    assert beyond_full.at_risk and beyond_full.plug_in_by is None  # needs more than 100 %


# --- recalibration by the probability integral transform ---------------------------------------------------------


def pit_counts(pits: list[float]) -> list[float]:
    counts = [0.0] * PIT_BINS
    for u in pits:
        counts[min(int(u * PIT_BINS), PIT_BINS - 1)] += 1.0
    return counts


def test_with_no_outcomes_the_recalibration_changes_nothing():
    identity = PitCalibration.from_counts([0.0] * PIT_BINS, prior=20.0)
    for raw in (0.0, 0.1, 0.5, 0.9, 0.975, 1.0):
        assert identity.probability(raw) == pytest.approx(raw)
        assert identity.raw_threshold(raw) == pytest.approx(raw)


def test_intervals_twice_too_wide_are_recalibrated_to_the_frequency_of_ready_pick_ups():
    """The predictions say sd 10 around 50; the actual levels spread with sd 5. A requirement of 40 is then met
    97.7 % of the time, not the 84.1 % the interval alone says."""
    rng = random.Random(7)
    dist = LevelDistribution.from_interval(50.0, 50.0 - 19.6, 50.0 + 19.6)
    actuals = [rng.gauss(50.0, 5.0) for _ in range(4000)]
    calibration = PitCalibration.from_counts(pit_counts([dist.cdf(a) for a in actuals]), prior=20.0)

    raw = probability_ready(dist, Requirement(40.0))
    assert raw == pytest.approx(0.841, abs=0.001)
    observed = sum(a >= 40.0 for a in actuals) / len(actuals)
    assert calibration.probability(raw) == pytest.approx(observed, abs=0.01)
    assert observed == pytest.approx(0.977, abs=0.01)


def test_the_charge_aims_at_the_recalibrated_threshold():
    """Too-narrow intervals (actual sd twice the stated): the recalibrated probability is lower, so more charge is
    needed than the raw distribution asks, and with it the recalibrated probability reaches the threshold."""
    rng = random.Random(11)
    dist = LevelDistribution.from_interval(50.0, 50.0 - 9.8, 50.0 + 9.8)
    calibration = PitCalibration.from_counts(pit_counts([dist.cdf(rng.gauss(50.0, 10.0)) for _ in range(4000)]), 20.0)
    common = {"level": 50.0, "lower": 40.2, "upper": 59.8, "requirement": Requirement(45.0), "threshold": 0.9}
    common |= {"pickup": PICKUP, "present": PICKUP - timedelta(hours=20), "charge_rate": 10.0}

    plain = readiness_assess(**common)
    recalibrated = readiness_assess(**common, calibration=calibration)

    assert recalibrated.probability_ready < plain.probability_ready
    assert recalibrated.charge_needed > plain.charge_needed
    shifted = probability_ready(dist.shifted(recalibrated.charge_needed), Requirement(45.0))
    assert calibration.probability(shifted) >= 0.9 - 1e-6


def test_a_recalibration_with_no_outcomes_of_its_own_is_the_one_it_is_shrunk_towards():
    counts = [0.0] * PIT_BINS
    counts[3] = 30.0
    coarse = PitCalibration.from_counts(counts, prior=20.0)
    fine = PitCalibration.from_counts([0.0] * PIT_BINS, prior=20.0, shape=coarse)
    assert fine.cdf == pytest.approx(coarse.cdf)
    assert sum(coarse.bin_shares()) == pytest.approx(1.0)
    # its own outcomes then outweigh the shape as they accumulate
    own = PitCalibration.from_counts([10.0] * PIT_BINS, prior=20.0, shape=coarse)
    assert abs(own.g(0.5) - 0.5) < abs(coarse.g(0.5) - 0.5)


@pytest.mark.parametrize("spread", [0.1, 0.3, 0.5])
def test_the_charge_planned_for_a_deadline_meets_the_aim_when_the_charger_delivers_it_give_or_take_spread(spread):
    dist, requirement = LevelDistribution.from_interval(40.0, 30.0, 50.0), Requirement(55.0)
    assert charge_for_deadline(dist, requirement, 0.9, 0.0) == charge_needed(dist, requirement, 0.9)

    planned = charge_for_deadline(dist, requirement, 0.9, spread)

    assert planned > charge_needed(dist, requirement, 0.9)
    rng = random.Random(3)
    met = sum(
        40.0 + rng.gauss(0.0, 10.0 / 1.96) * 1.0 + planned * (1.0 + rng.gauss(0.0, spread)) >= 55.0
        for _ in range(40_000)
    )
    assert met / 40_000 == pytest.approx(0.9, abs=0.01)  # the lower side of a symmetric interval: a plain normal


def test_a_deadline_whose_margin_is_out_of_reach_falls_back_to_the_time_the_charge_itself_takes():
    common = {"level": 40.0, "lower": 30.0, "upper": 50.0, "threshold": 0.9, "pickup": PICKUP, "charge_rate": 10.0}
    needed = readiness_assess(requirement=Requirement(55.0), present=PICKUP - timedelta(days=1), **common)
    plain = PICKUP - timedelta(hours=charge_hours(40.0, 40.0 + needed.charge_needed, 10.0))

    roomy = readiness_assess(
        requirement=Requirement(55.0), present=PICKUP - timedelta(days=1), charge_spread=0.3, **common
    )
    tight = readiness_assess(
        requirement=Requirement(55.0), present=plain - timedelta(minutes=5), charge_spread=0.3, **common
    )

    assert roomy.plug_in_by < plain - timedelta(minutes=10)  # earlier, for what the charger may not deliver
    assert tight.plug_in_by == plain.replace(second=0, microsecond=0)  # the margin's time has passed


@pytest.mark.parametrize("aim", [0.95, 0.98, 0.99, 0.999])
def test_a_high_aim_with_the_widest_spread_still_plans_a_finite_charge(aim):
    """A recalibrated aim can reach 0.98 and more; past z x spread = 1 no finite charge would do."""
    dist, requirement = LevelDistribution.from_interval(45.0, 5.0, 85.0), Requirement(60.0)
    planned = charge_for_deadline(dist, requirement, aim, 0.5)
    assert charge_needed(dist, requirement, aim) < planned < 1_000.0  # a margin, never dropped, never infinite
