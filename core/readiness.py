"""Will the car be ready? The chance that the level at pick-up meets what the booking needs, and what it takes.

Pure functions, no database. The predictive distribution is read back from a stored prediction's level and its
95 % interval, so that the probability a renter is shown and the interval staff check for coverage can never
disagree (see `LevelDistribution`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import NormalDist

from core.physics import FULL, Z_95, charge_hours

_NORMAL = NormalDist()


@dataclass(frozen=True)
class LevelDistribution:
    """The level at pick-up as a split normal in quantile form: median `level`, each side its own spread.

    Why this distribution: the stored prediction is a level and a possibly asymmetric 95 % interval (a car that
    may or may not be plugged in has a long upper side; the model's intervals are quantiles). The one
    distribution that reproduces exactly those three numbers, with nothing assumed beyond them, is a normal below
    the level with sd (level - lower) / 1.96 and a normal above it with sd (upper - level) / 1.96, joined at their
    medians: P(X < lower) = P(X > upper) = 2.5 % and P(X < level) = 50 %. Calibration of the interval (which the
    accuracy page measures) therefore carries over to the probability.

    Clipping: the interval is clipped to 0..100, so a side that touches a bound only tells that its spread is at
    least that wide. The lower side then borrows the upper side's spread when wider (a lower probability, the
    cautious answer); the upper side keeps its own (also cautious: it never makes a full charge likelier than the
    interval says). Readiness counts `>=`: a car whose whole interval is at 100 is ready for any requirement up to
    100, and one predicted at 100 with a lower end below it is ready for a requirement of 100 half the time.
    """

    level: float
    sd_lower: float
    sd_upper: float

    @classmethod
    def from_interval(cls, level: float, lower: float, upper: float) -> LevelDistribution:
        sd_lower = max(level - lower, 0.0) / Z_95
        sd_upper = max(upper - level, 0.0) / Z_95
        if lower <= 0.0 < level:
            sd_lower = max(sd_lower, sd_upper)
        return cls(level=level, sd_lower=sd_lower, sd_upper=sd_upper)

    def cdf(self, x: float) -> float:
        """P(level <= x): where an actual level fell in this distribution (its probability integral transform)."""
        sd = self.sd_lower if x <= self.level else self.sd_upper
        if sd <= 0.0:
            return 0.5 if x == self.level else float(x > self.level)
        return _NORMAL.cdf((x - self.level) / sd)

    def shifted(self, points: float) -> LevelDistribution:
        """The same spread around a level moved by `points` (what charging that much longer would give)."""
        return LevelDistribution(self.level + points, self.sd_lower, self.sd_upper)


@dataclass(frozen=True)
class Requirement:
    """The level the booking needs at pick-up (points), with its own spread (0 when the platform gave a level)."""

    level: float
    std: float = 0.0


def requirement_for_distance(distance_km: float, drain_per_km: float, drain_per_km_std: float) -> Requirement:
    """The level a planned distance needs: distance x drain per km, with sd = distance x sd of drain per km.

    The variance of a fixed distance times an uncertain rate is distance^2 x var(rate). No reserve is added: a
    platform that wants one sends `required_battery` instead.
    """
    distance = max(distance_km, 0.0)
    return Requirement(level=distance * max(drain_per_km, 0.0), std=distance * max(drain_per_km_std, 0.0))


def _combined(dist: LevelDistribution, requirement: Requirement) -> tuple[float, float]:
    """Each side's spread of (level - requirement): the two are independent, so the variances add."""
    extra = requirement.std * requirement.std
    return math.sqrt(dist.sd_lower**2 + extra), math.sqrt(dist.sd_upper**2 + extra)


def probability_ready(dist: LevelDistribution, requirement: Requirement) -> float:
    """P(level at pick-up >= required level).

    With a requirement of its own spread (a distance), each side of the level's distribution is widened by it,
    which is exact for a symmetric interval and a close approximation otherwise. A requirement at or below 0 is
    always met; one above 100 with no spread never is.
    """
    if requirement.level <= 0.0 and requirement.std == 0.0:
        return 1.0
    if requirement.level > FULL and requirement.std == 0.0:
        return 0.0
    sd_lower, sd_upper = _combined(dist, requirement)
    gap = requirement.level - dist.level
    if gap <= 0.0:
        below = _NORMAL.cdf(gap / sd_lower) if sd_lower > 0.0 else 0.0
    else:
        below = _NORMAL.cdf(gap / sd_upper) if sd_upper > 0.0 else 1.0
    return min(1.0, max(0.0, 1.0 - below))


def charge_needed(dist: LevelDistribution, requirement: Requirement, threshold: float) -> float:
    """The points to add to the predicted level so that `probability_ready` reaches `threshold` (0 if it does).

    The level's distribution is shifted, not reshaped, by charging: P(shifted by c) = threshold solves in closed
    form on the side of the median the threshold falls on. Rounded up to 0.01, so the rounded figure suffices.
    """
    if probability_ready(dist, requirement) >= threshold:
        return 0.0
    sd_lower, sd_upper = _combined(dist, requirement)
    quantile = 1.0 - min(max(threshold, 1e-9), 1.0 - 1e-9)
    sd = sd_lower if quantile <= 0.5 else sd_upper
    points = requirement.level - dist.level - sd * _NORMAL.inv_cdf(quantile)
    return max(0.0, math.ceil(points * 100.0 - 1e-9) / 100.0)


MAX_CHARGE_SPREAD = 0.5  # a plug-in delivers its planned charge give or take half of it, at the most
MAX_Z_SPREAD = 0.9  # and the aim's quantile times that spread stays below 1 (see charge_for_deadline)


def charge_for_deadline(dist: LevelDistribution, requirement: Requirement, aim: float, spread: float) -> float:
    """The charge to plan a plug-in deadline for, when what the charger delivers is itself uncertain.

    `charge_needed` is enough if the car gains exactly the planned points; a charger delivers them give or take
    `spread` (relative sd: a cold battery takes a fifth less, the car's rate is known from few charges). With the
    delivered charge c' ~ N(c, (spread c)^2) independent of the level, P(level + c' >= required) = aim solves in
    closed form on the lower side: with m = level - required, A = 1 - z^2 spread^2 and z the aim's quantile,
    c = (-m + z sqrt(spread^2 m^2 + A sd^2)) / A. With no spread it is `charge_needed`'s own answer.
    """
    if aim <= 0.5 or spread <= 0.0:
        return charge_needed(dist, requirement, aim)
    sd_lower, _ = _combined(dist, requirement)
    z = _NORMAL.inv_cdf(min(aim, 1.0 - 1e-9))
    # The closed form holds while z x spread < 1: past it no finite charge reaches the aim (the charger's own
    # spread grows with the charge). A recalibrated aim can be 0.98 or more, so the spread is held below 0.9 / z.
    spread = min(spread, MAX_CHARGE_SPREAD, MAX_Z_SPREAD / z)
    a = 1.0 - z * z * spread * spread
    m = dist.level - requirement.level
    points = (-m + z * math.sqrt(spread * spread * m * m + a * sd_lower * sd_lower)) / a
    return max(charge_needed(dist, requirement, aim), math.ceil(points * 100.0 - 1e-9) / 100.0)


PIT_BINS = 20  # the recalibration's resolution: where actual levels fell, in twentieths of the distribution


@dataclass(frozen=True)
class PitCalibration:
    """How the fleet's actual levels fell in their predicted distributions, to recalibrate the probability.

    Why: an interval kept at 95 % coverage says nothing of the shape between its ends, and a requirement usually
    falls there. If the distributions were honest, the probability integral transform u = F(actual) would be
    uniform; its observed CDF G says how it is not. Recalibrated, P(actual < x) = G(F(x)), for any x (Kuleshov,
    Fenner and Ermon, 2018, "Accurate uncertainties for deep learning using calibrated regression"), so the
    probability of any requirement is honest where G was learned. `cdf[k]` is G at k / PIT_BINS.
    """

    cdf: tuple[float, ...]

    @classmethod
    def from_counts(cls, counts: list[float], prior: float, shape: PitCalibration | None = None) -> PitCalibration:
        """G from the weights of scored outcomes per bin, blended with `prior` outcomes spread as `shape` spreads
        them (a coarser group's recalibration), or evenly (the identity) without one."""
        spread = [1.0 / len(counts)] * len(counts) if shape is None else shape.bin_shares()
        weights = [c + prior * share for c, share in zip(counts, spread, strict=True)]
        total, running, cdf = sum(weights), 0.0, [0.0]
        for w in weights:
            running += w
            cdf.append(min(1.0, running / total) if total > 0 else len(cdf) / len(counts))
        return cls(tuple(cdf))

    def bin_shares(self) -> list[float]:
        """The share of outcomes in each bin: what G spreads over them."""
        return [high - low for low, high in zip(self.cdf, self.cdf[1:], strict=False)]

    def g(self, u: float) -> float:
        """G(u), linear between the bin edges."""
        u = min(max(u, 0.0), 1.0)
        position = u * (len(self.cdf) - 1)
        k = min(int(position), len(self.cdf) - 2)
        return self.cdf[k] + (self.cdf[k + 1] - self.cdf[k]) * (position - k)

    def g_inverse(self, q: float) -> float:
        """The smallest u with G(u) >= q (G is non-decreasing)."""
        q = min(max(q, 0.0), 1.0)
        bins = len(self.cdf) - 1
        for k in range(bins):
            low, high = self.cdf[k], self.cdf[k + 1]
            if high >= q:
                return (k + (0.0 if high <= low else (q - low) / (high - low))) / bins
        return 1.0

    def probability(self, raw: float) -> float:
        """A raw P(ready) = 1 - F(required), recalibrated: 1 - G(F(required))."""
        return 1.0 - self.g(1.0 - raw)

    def raw_threshold(self, threshold: float) -> float:
        """The raw probability whose recalibrated one is `threshold` (what `charge_needed` must aim at)."""
        return 1.0 - self.g_inverse(1.0 - threshold)


@dataclass(frozen=True)
class Readiness:
    required_level: float
    required_std: float
    probability_ready: float
    at_risk: bool
    charge_needed: float
    plug_in_by: datetime | None


def readiness_assess(
    *,
    level: float,
    lower: float,
    upper: float,
    requirement: Requirement,
    threshold: float,
    pickup: datetime,
    present: datetime,
    charge_rate: float,
    charge_spread: float = 0.0,
    ceiling: float = FULL,
    calibration: PitCalibration | None = None,
) -> Readiness:
    """Everything the `readiness` object says about one stored prediction.

    `plug_in_by` is the pick-up minus the hours the car's charging curve (`core.physics.charge_hours`, the taper
    above 80 % included) takes from the predicted level to that level plus `charge_needed`, raised for the
    uncertainty of what the charger delivers (`charge_spread`, `charge_for_deadline`) where the car can take
    it. Charging from the
    predicted level is a conservative simplification: plugged in earlier, the car would start the charge a little
    higher (it would not have idled down that far), so it needs slightly less time than this. None when no
    charge is needed, when the needed level is beyond what the car can reach (its ceiling, or 100 % that the
    taper never quite reaches), or when the latest plug-in time is already before `present`. It is rounded down
    to the minute.

    With a `calibration` (what the fleet's outcomes taught about such predictions), the probability is
    recalibrated, and the charge aims at the raw probability whose recalibrated one reaches `threshold`.
    """
    dist = LevelDistribution.from_interval(level, lower, upper)
    probability = probability_ready(dist, requirement)
    if calibration is not None:
        probability = calibration.probability(probability)
    probability = round(probability, 4)  # what is stored and shown: at_risk must agree with it
    at_risk = probability < threshold
    # The raw probability the charge must reach (searched in the recalibration): only an at-risk booking needs it.
    aim = threshold if calibration is None or not at_risk else calibration.raw_threshold(threshold)
    needed = charge_needed(dist, requirement, aim) if at_risk else 0.0
    plug_in_by = None
    if needed > 0.0:
        # With the margin for what the charger delivers; where the car cannot take it (beyond its ceiling) or that
        # time has passed, the latest time for the charge itself: still the one that gives the threshold.
        for points in (charge_for_deadline(dist, requirement, aim, charge_spread), needed):
            hours = charge_hours(level, level + points, charge_rate, ceiling)
            if math.isfinite(hours):
                latest = (pickup - timedelta(hours=hours)).replace(second=0, microsecond=0)  # to the minute, earlier
                if latest >= present:
                    plug_in_by = latest
                    break
    return Readiness(
        required_level=round(requirement.level, 2),
        required_std=round(requirement.std, 2),
        probability_ready=probability,
        at_risk=at_risk,
        charge_needed=needed,
        plug_in_by=plug_in_by,
    )
