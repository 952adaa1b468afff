"""What each predicted booking needs at pick-up, turned into `core.readiness` requirements (issue 16).

A booking needs the level the platform sent (`required_battery`), or the level its planned distance takes at
this car's and this renter's learned drain per km (`planned_distance_km`), or else the fleet's rule
(`READINESS_MIN_LEVEL`). `predictions.services._store` assesses every prediction against it as it is stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from django.conf import settings

from core.readiness import Requirement, requirement_for_distance
from learning.models import VehiclePattern
from learning.selectors import FleetPrior, drain_per_km, user_patterns_for


@dataclass(frozen=True)
class Need:
    """What the platform said a booking needs: at most one of the two is set (the serializers refuse both)."""

    required_battery: float | None = None
    planned_distance_km: float | None = None

    @property
    def given(self) -> bool:
        return self.required_battery is not None or self.planned_distance_km is not None


def requirements_for(
    *, needs: Mapping[str, Need], user_ids: Mapping[str, str], pattern: VehiclePattern | None, prior: FleetPrior
) -> dict[str, Requirement]:
    """Each booking's requirement; a booking missing from `needs` (or needing nothing stated) gets the fleet rule.

    Renters' patterns are read (one query) only when some booking gives a distance, so the hot path without
    one costs no query.
    """
    distances = {booking_id for booking_id, need in needs.items() if need.planned_distance_km is not None}
    users = user_patterns_for(user_ids.get(b, "") for b in distances) if distances else {}
    requirements: dict[str, Requirement] = {}
    for booking_id, need in needs.items():
        if need.required_battery is not None:
            requirements[booking_id] = Requirement(level=need.required_battery)
        elif need.planned_distance_km is not None:
            rate, std = drain_per_km(pattern, users.get(user_ids.get(booking_id, "")), prior)
            requirements[booking_id] = requirement_for_distance(need.planned_distance_km, rate, std)
    return requirements


def fleet_requirement() -> Requirement:
    """The fleet's rule for a booking that stated no need."""
    return Requirement(level=settings.READINESS_MIN_LEVEL)
