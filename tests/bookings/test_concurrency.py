"""Events for one car posted at the same moment from several threads (Postgres row locks)."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from rest_framework.test import APIClient

from bookings.models import InboundEvent
from learning.models import UserPattern, VehiclePattern
from tests.seed_examples import CREATED, URL

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
T = datetime(2025, 11, 3, 8, 0, tzinfo=UTC)


def iso(dt) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def run_together(key: str, calls: list[tuple[str, dict]]) -> list:
    """POST every call from its own thread, all released at once; return the responses."""
    barrier = threading.Barrier(len(calls))
    responses: list = [None] * len(calls)

    def worker(index: int, url: str, body: dict) -> None:
        client = APIClient()
        client.credentials(HTTP_X_API_KEY=key)
        barrier.wait()
        try:
            responses[index] = client.post(url, body, format="json")
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i, url, body)) for i, (url, body) in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return responses


def ended(booking: str, start: datetime, *, car: str = "78", user: str = "u") -> dict:
    return {
        "booking_id": booking,
        "vehicle_id": car,
        "user_id": user,
        "starts_at": iso(start),
        "ends_at": iso(start + timedelta(hours=1)),
        "battery_at_start": 80.0,
        "battery_at_end": 70.0,
        "charging_at_end": 1,
    }


def test_the_same_event_from_two_threads_is_applied_once(api_key):
    responses = run_together(api_key, [(URL["created"], CREATED), (URL["created"], CREATED)])

    assert [r.status_code for r in responses] == [200, 200]
    assert responses[0].json() == responses[1].json()
    assert InboundEvent.objects.count() == 1
    assert sorted(r.get("Idempotent-Replayed", "false") for r in responses) == ["false", "true"]


def test_fifty_concurrent_outcomes_for_one_car_lose_no_update(api_key):
    calls = [(URL["ended"], ended(f"B{i}", T + timedelta(hours=2 * i), user=f"u{i % 5}")) for i in range(50)]

    responses = run_together(api_key, calls)

    assert all(r.status_code == 200 for r in responses), [r.json() for r in responses if r.status_code != 200]
    pattern = VehiclePattern.objects.get(vehicle__external_id="78")
    assert pattern.total_bookings == 50
    assert pattern.drive_observations == 50
    assert pattern.total_charges == 50 and pattern.charging_frequency == 1.0
    assert sum(UserPattern.objects.values_list("total_bookings", flat=True)) == 50
    totals = sorted(r.json()["total_bookings"] for r in responses)
    assert totals == list(range(1, 51))  # each event saw the one before it: serialized


def test_events_for_different_cars_share_renters_without_losing_updates(api_key):
    calls = [(URL["ended"], ended(f"C{i}", T, car=f"car{i}", user="same-renter")) for i in range(20)]

    responses = run_together(api_key, calls)

    assert all(r.status_code == 200 for r in responses)
    assert UserPattern.objects.get(user_id="same-renter").total_bookings == 20


def test_concurrent_batches_naming_cars_in_opposite_orders_do_not_deadlock(api_key):
    def batch(cars: list[str], tag: str) -> dict:
        return {
            "bookings": [
                {
                    "vehicle_id": car,
                    "booking_id": f"{tag}{car}",
                    "booking_start_time": iso(T),
                    "current_battery_level": 50,
                    "current_timestamp": iso(T - timedelta(hours=1)),
                }
                for car in cars
            ]
        }

    cars = [f"car{i}" for i in range(10)]
    calls = [(URL["batch"], batch(cars, "a")), (URL["batch"], batch(cars[::-1], "b"))] * 3

    responses = run_together(api_key, calls)

    assert [r.status_code for r in responses] == [200] * 6
    assert [p["booking_id"] for p in responses[1].json()["predictions"]] == [f"b{car}" for car in cars[::-1]]
