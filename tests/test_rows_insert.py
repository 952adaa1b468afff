"""The hand-written insert (common/rows.py) stores what `bulk_create` stores and gives the instances their keys."""

import math
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.models import JSONField, Value
from django.forms.models import model_to_dict
from django.test.utils import CaptureQueriesContext

from bookings.models import BatteryReading, Vehicle
from callbacks.models import CallbackItem
from common.rows import insert, insert_missing, keyed_sql
from core.readiness import PIT_BINS
from predictions.models import IntervalCalibration, Prediction, PredictorScore, ReadinessCalibration
from tests.factories import BookingFactory, CallbackOutboxFactory, PredictionFactory

pytestmark = pytest.mark.django_db

T = datetime(2025, 11, 3, 8, tzinfo=UTC)


def unsaved(prefix: str, count: int, booking) -> list[Prediction]:
    """Predictions of every kind of column: JSON steps, nulls, timestamps, foreign keys."""
    return [
        PredictionFactory.build(
            booking=booking,
            prediction_id=f"{prefix}-{i}",
            predicted_battery=50.0 + i,
            cascade_steps=[{"booking_id": f"B{i}", "level": 40.5 + i, "note": 'quote " and é'}],
            plug_in_by=(T - timedelta(hours=i)) if i % 2 else None,
            at_risk=bool(i % 2) if i else None,
            is_current=False,  # one current prediction a booking: both sets are of one booking
        )
        for i in range(count)
    ]


def stored(prefix: str) -> list[dict]:
    rows = Prediction.objects.filter(prediction_id__startswith=f"{prefix}-").order_by("predicted_battery")
    return [model_to_dict(p, exclude=["id", "prediction_id"]) for p in rows]


@pytest.mark.parametrize("count", [1, 4])
def test_it_stores_what_bulk_create_stores(count):
    booking = BookingFactory(scheduled_start=T)
    by_orm, by_hand = unsaved("orm", count, booking), unsaved("hand", count, booking)
    Prediction.objects.bulk_create(by_orm)

    returned = insert(Prediction, by_hand)

    assert stored("hand") == stored("orm")
    assert stored("hand")[0]["cascade_steps"][0]["note"] == 'quote " and é'
    assert returned == by_hand
    assert [p.pk for p in by_hand] == list(
        Prediction.objects.filter(prediction_id__startswith="hand-")
        .order_by("predicted_battery")
        .values_list("pk", flat=True)
    )
    assert all(not p._state.adding for p in by_hand)


def test_rows_beyond_one_statement_go_in_batches_each_getting_its_own_key(monkeypatch):
    monkeypatch.setattr(connection.ops, "bulk_batch_size", lambda fields, objs: 2)
    outbox = CallbackOutboxFactory()
    items = [CallbackItem(outbox=outbox, booking_external_id=f"B{i}", sequence=i) for i in range(5)]

    insert(CallbackItem, items)

    assert {i.pk: (i.booking_external_id, i.sequence) for i in items} == dict(
        (pk, (booking, sequence))
        for pk, booking, sequence in CallbackItem.objects.values_list("pk", "booking_external_id", "sequence")
    )
    assert len({i.pk for i in items}) == 5


def test_nothing_to_insert_runs_no_query(django_assert_num_queries):
    with django_assert_num_queries(0):
        assert insert(Prediction, []) == []


def test_a_value_json_cannot_carry_exactly_is_stored_as_bulk_create_stores_it():
    booking = BookingFactory(scheduled_start=T)
    by_orm, by_hand = unsaved("orm", 3, booking), unsaved("hand", 3, booking)
    for p in (by_orm[1], by_hand[1]):
        p.confidence_upper = math.inf
    Prediction.objects.bulk_create(by_orm)

    insert(Prediction, by_hand)

    assert stored("hand") == stored("orm")
    assert stored("hand")[1]["confidence_upper"] == math.inf


@pytest.mark.postgres
def test_on_postgres_many_rows_go_in_one_statement_of_one_parameter():
    """More than 50 parameters and psycopg would parse the statement again on every call."""
    booking = BookingFactory(scheduled_start=T)
    with CaptureQueriesContext(connection) as captured:
        insert(Prediction, unsaved("hand", 10, booking))

    [query] = captured.captured_queries
    assert "json_populate_recordset" in query["sql"]
    assert Prediction.objects.filter(prediction_id__startswith="hand-").count() == 10


def test_a_json_null_is_stored_as_json_null_not_as_a_missing_value():
    booking = BookingFactory(scheduled_start=T)
    rows = unsaved("hand", 3, booking)
    for p in rows:
        p.cascade_steps = Value(None, JSONField())

    insert(Prediction, rows)

    assert Prediction.objects.filter(prediction_id__startswith="hand-", cascade_steps=None).count() == 3


def test_an_unsaved_related_object_is_refused_as_save_refuses_it():
    unsaved_car = Vehicle(external_id="never-saved")

    with pytest.raises(ValueError, match="unsaved related object"):
        insert(BatteryReading, [BatteryReading(vehicle=unsaved_car, level=50.0, recorded_at=T, source="predict")])
    assert not BatteryReading.objects.exists()


def test_insert_missing_adds_the_new_rows_and_leaves_the_existing_ones_as_they_are():
    ReadinessCalibration.objects.create(key="<6h", counts=[1.0] * PIT_BINS, bookings=3.0)

    insert_missing(
        ReadinessCalibration,
        [ReadinessCalibration(key=k, counts=[0.0] * PIT_BINS) for k in ("<6h", "6-24h", "<6h|charging")],
    )

    rows = {r.key: (r.counts, r.bookings) for r in ReadinessCalibration.objects.all()}
    assert rows == {
        "<6h": ([1.0] * PIT_BINS, 3.0),  # kept, not overwritten
        "6-24h": ([0.0] * PIT_BINS, 0.0),
        "<6h|charging": ([0.0] * PIT_BINS, 0.0),
    }


def test_insert_missing_stores_what_bulk_create_with_ignore_conflicts_stores():
    PredictorScore.objects.create(kind="<6h|own|parked", candidate="model", weight=2.0, sum_abs_error=4.0)
    wanted = [("<6h|own|parked", "model"), ("<6h|own|parked", "pattern"), ("<6h", "persistence")]

    insert_missing(PredictorScore, [PredictorScore(kind=k, candidate=c) for k, c in wanted])
    by_hand = sorted(model_to_dict(s, exclude=["id"]).items() for s in PredictorScore.objects.all())
    PredictorScore.objects.all().delete()
    PredictorScore.objects.create(kind="<6h|own|parked", candidate="model", weight=2.0, sum_abs_error=4.0)
    PredictorScore.objects.bulk_create([PredictorScore(kind=k, candidate=c) for k, c in wanted], ignore_conflicts=True)
    by_orm = sorted(model_to_dict(s, exclude=["id"]).items() for s in PredictorScore.objects.all())

    assert by_hand == by_orm
    assert len(by_hand) == 3


def test_keyed_rows_come_in_key_order_and_are_locked_only_where_the_backend_locks_rows():
    for key in ("b", "c", "a"):
        IntervalCalibration.objects.create(key=key)

    sql = keyed_sql(IntervalCalibration, "key", 2, lock=True, select=("key",))
    with connection.cursor() as cursor:
        cursor.execute(sql, ["c", "a"])
        found = [key for (key,) in cursor.fetchall()]

    assert found == ["a", "c"]
    assert sql.endswith("FOR UPDATE") == (connection.vendor == "postgresql")
