"""Helpers for tests that need a trained model: simulated histories, a champion, outcomes in the database.

Models here are trained small (a 15-car, 20-day fleet, 30 boosting rounds: well under a second)
so that every test can afford its own champion instead of sharing one across tests.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from bookings.models import Booking, BookingStatus, Vehicle
from core.features import Outcome
from core.simulation.fleet import FleetConfig, simulate
from learning.models import BookingOutcome, ModelVersion, UserPattern, VehiclePattern
from learning.training import model_promote, model_train

SMALL_FLEET = FleetConfig(cars=15, renters=40, days=20, seed=3)
SMALL_ROUNDS = 30


@functools.cache
def fleet_outcomes(config: FleetConfig = SMALL_FLEET) -> tuple[Outcome, ...]:
    """The completed bookings of a simulated fleet (pure and seeded: computed once per test session)."""
    return tuple(simulate(config).outcomes())


def champion_serve(
    *, config: FleetConfig = SMALL_FLEET, rounds: int = SMALL_ROUNDS, source: str | None = None
) -> ModelVersion:
    """Train a model on `config`'s simulated outcomes through the service and make it the champion.

    Writes the artifact to `settings.MODEL_DIR`: point that at a temporary directory first.
    """
    row = model_train(
        outcomes=list(fleet_outcomes(config)), source=source or f"synthetic:{config.seed}", rounds=rounds, fleet=config
    )
    return model_promote(version=row.version)


def outcomes_store(outcomes: Iterable[Outcome], *, prefix: str = "H") -> int:
    """Record a finished history as the service would have: completed bookings and their outcomes.

    Bulk inserts (no signals): the patterns are not learned, which retraining does not read. Each car and renter
    gets its pattern row, as an outcome's signal makes it: serving reads a car's or a renter's outcomes only when
    it has one (`learning.selectors.feature_book_for`).
    """
    outcomes = list(outcomes)
    vehicles = {v: Vehicle.objects.get_or_create(external_id=v)[0] for v in sorted({o.vehicle_id for o in outcomes})}
    for vehicle in vehicles.values():
        VehiclePattern.objects.get_or_create(vehicle=vehicle)
    for user_id in sorted({o.user_id for o in outcomes if o.user_id}):
        UserPattern.objects.get_or_create(user_id=user_id)
    bookings = Booking.objects.bulk_create(
        Booking(
            external_id=f"{prefix}{i}",
            vehicle=vehicles[o.vehicle_id],
            user_id=o.user_id,
            status=BookingStatus.COMPLETED,
            scheduled_start=o.start,
            scheduled_end=o.end,
            actual_start=o.start,
            actual_end=o.end,
            battery_at_start=o.battery_at_start,
            battery_at_end=o.battery_at_end,
            charging_at_end=o.charging_at_end,
        )
        for i, o in enumerate(outcomes)
    )
    BookingOutcome.objects.bulk_create(
        BookingOutcome(
            booking=booking,
            vehicle=booking.vehicle,
            user_id=o.user_id,
            starts_at=o.start,
            ends_at=o.end,
            duration_hours=(o.end - o.start).total_seconds() / 3600.0,
            battery_at_start=o.battery_at_start,
            battery_at_end=o.battery_at_end,
            battery_drain=o.battery_at_start - o.battery_at_end,
            charging_at_end=o.charging_at_end,
        )
        for booking, o in zip(bookings, outcomes, strict=True)
    )
    return len(outcomes)
