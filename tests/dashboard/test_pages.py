"""The car timeline, models, deliveries and operations pages: their data and their two actions."""

from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.utils import timezone

from bookings.models import BookingStatus
from callbacks.models import CallbackAttempt, CallbackStatus
from dashboard.selectors.operations import idle_drain_jumps, low_battery_upcoming
from dashboard.selectors.timeline import car_timeline
from learning.models import ModelStatus, ModelVersion, VehiclePattern
from tests.factories import (
    BatteryReadingFactory,
    BookingFactory,
    CallbackOutboxFactory,
    PredictionFactory,
    VehicleFactory,
    VehiclePatternFactory,
)
from tests.seed_examples import CREATED, ENDED, STARTED, URL


def _soon(hours: float):
    return timezone.now() + timedelta(hours=hours)


# --- car timeline -------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_timeline_holds_readings_predictions_actuals_and_bands():
    car = VehicleFactory(external_id="42")
    done = BookingFactory(
        vehicle=car, scheduled_start=_soon(-30), status=BookingStatus.COMPLETED, battery_at_start=55.0
    )
    PredictionFactory(booking=done, predicted_battery=60, actual_battery=55)
    upcoming = BookingFactory(vehicle=car, scheduled_start=_soon(20))
    PredictionFactory(booking=upcoming, predicted_battery=70)
    BookingFactory(vehicle=car, scheduled_start=_soon(-24 * 40), status=BookingStatus.COMPLETED)  # too old
    BookingFactory(scheduled_start=_soon(-5))  # another car
    BatteryReadingFactory(vehicle=car, level=80, recorded_at=_soon(-40))
    BatteryReadingFactory(vehicle=car, level=55, recorded_at=_soon(-30))

    timeline = car_timeline(vehicle=car)

    assert [r.booking.external_id for r in timeline.rows] == [done.external_id, upcoming.external_id]
    assert timeline.rows[0].error == pytest.approx(-5)
    assert timeline.rows[0].covered is True
    assert timeline.rows[1].error is None
    chart = timeline.chart
    assert [p["y"] for p in chart["readings"]] == [80, 55]
    assert [p["y"] for p in chart["predicted"]] == [60, 70]
    assert chart["predicted"][0]["lower"] == 50 and chart["predicted"][0]["upper"] == 70
    assert [p["y"] for p in chart["actual"]] == [55]
    assert [b["status"] for b in chart["bands"]] == ["completed", "scheduled"]
    assert chart["since"] < chart["readings"][0]["x"] < chart["until"]


@pytest.mark.django_db
def test_timeline_page_through_the_events_api_and_the_car_admin_link(post, staff_client):
    for kind, body in (("created", CREATED), ("started", STARTED), ("ended", ENDED)):
        assert post(URL[kind], body).status_code in (200, 201)

    change_page = staff_client.get("/admin/bookings/vehicle/").content.decode()
    assert 'href="/admin/dashboard/cars/78/timeline/"' in change_page

    response = staff_client.get("/admin/dashboard/cars/78/timeline/", {"since": "2025-11-01", "until": "2025-11-06"})
    assert response.status_code == 200
    timeline = response.context["timeline"]
    assert timeline.rows[0].booking.external_id == "BK123456"
    assert {r.level for r in timeline.readings} >= {60.5, 48.0}
    assert timeline.chart["actual"][0]["y"] == 60.5
    assert b'id="timeline-data"' in response.content


@pytest.mark.django_db
def test_timeline_of_an_unknown_car_is_a_404(staff_client):
    assert staff_client.get("/admin/dashboard/cars/nope/timeline/").status_code == 404


# --- operations ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_low_battery_lists_scheduled_pickups_under_the_threshold_soonest_first():
    later = PredictionFactory(booking=BookingFactory(scheduled_start=_soon(30)), predicted_battery=12)
    sooner = PredictionFactory(  # the prediction is fine, but its interval reaches under the threshold
        booking=BookingFactory(scheduled_start=_soon(3)), predicted_battery=28, confidence_lower=15
    )
    PredictionFactory(booking=BookingFactory(scheduled_start=_soon(5)), predicted_battery=80)  # fine
    PredictionFactory(booking=BookingFactory(scheduled_start=_soon(24 * 5)), predicted_battery=5)  # too far
    PredictionFactory(booking=BookingFactory(scheduled_start=_soon(-2)), predicted_battery=5)  # past
    PredictionFactory(
        booking=BookingFactory(scheduled_start=_soon(2), status=BookingStatus.CANCELLED), predicted_battery=5
    )

    listed = low_battery_upcoming(threshold=20, days=3)

    assert [p.pk for p in listed] == [sooner.pk, later.pk]
    assert [p.pk for p in low_battery_upcoming(threshold=13, days=3)] == [later.pk]


def _park_and_drive(post, car: int, drains_per_hour: list[float]) -> None:
    """One one-hour booking every three days through the API; between them the car idles 71 h at that drain."""
    start = timezone.now() - timedelta(days=3 * len(drains_per_hour) + 1)
    level = 90.0
    for i, drain_per_hour in enumerate(drains_per_hour):
        begin = start + timedelta(days=3 * i)
        booking = {
            "booking_id": f"IDLE{car}-{i}",
            "vehicle_id": car,
            "user_id": 1,
            "starts_at": begin.isoformat(),
            "ends_at": (begin + timedelta(hours=1)).isoformat(),
        }
        assert post(URL["created"], booking).status_code in (200, 201)
        if i:
            level -= drain_per_hour * 71
        started = {"booking_id": booking["booking_id"], "vehicle_id": car, "actual_battery_at_start": round(level, 2)}
        started["actual_started_at"] = begin.isoformat()
        assert post(URL["started"], started).status_code == 200
        level = 90.0
        ended = {**booking, "battery_at_start": started["actual_battery_at_start"], "battery_at_end": level}
        ended |= {"charging_at_end": 0, "future_bookings": []}
        assert post(URL["ended"], ended).status_code == 200


@pytest.mark.django_db
def test_idle_drain_jump_is_learned_from_parked_gaps_through_the_api(post):
    """Ten quiet parked gaps, then three where the car loses a point an hour: the car is listed."""
    _park_and_drive(post, 555, [0.05] * 11 + [1.0] * 3)

    jumps = idle_drain_jumps()

    assert [j.pattern.vehicle.external_id for j in jumps] == ["555"]
    assert jumps[0].recent > 2 * jumps[0].baseline
    assert jumps[0].baseline < 0.6


@pytest.mark.django_db
def test_a_quiet_first_gap_does_not_make_a_steady_car_a_jump(post):
    """The long-run drain is a plain mean at first: one quiet gap must not stay most of it for dozens."""
    _park_and_drive(post, 556, [0.05, 0.05] + [0.4] * 10)

    pattern = VehiclePattern.objects.get(vehicle__external_id="556")
    assert pattern.baseline_idle_observations == 11
    assert pattern.baseline_idle_drain_per_hour == pytest.approx((0.05 + 10 * 0.4) / 11, abs=0.01)
    assert idle_drain_jumps() == []


@pytest.mark.django_db
def test_cars_learned_before_the_upgrade_start_their_baseline_from_their_current_drain():
    import importlib

    from django.apps import apps

    migration = importlib.import_module("learning.migrations.0003_baseline_idle_observations")
    old = VehiclePatternFactory(avg_idle_drain_per_hour=0.3, var_idle_drain_per_hour=0.01, idle_observations=40)
    never = VehiclePatternFactory()

    migration.baseline_from_current(apps, None)

    old.refresh_from_db()
    never.refresh_from_db()
    assert (old.baseline_idle_drain_per_hour, old.baseline_idle_observations) == (0.3, 40)
    assert never.baseline_idle_drain_per_hour is None and never.baseline_idle_observations == 0


@pytest.mark.django_db
def test_a_steady_car_or_one_with_little_history_is_not_a_jump():
    VehiclePatternFactory(
        avg_idle_drain_per_hour=0.12, baseline_idle_drain_per_hour=0.1, baseline_idle_observations=30
    )  # steady
    VehiclePatternFactory(
        avg_idle_drain_per_hour=1.0, baseline_idle_drain_per_hour=0.1, baseline_idle_observations=3
    )  # too little history
    VehiclePatternFactory(
        avg_idle_drain_per_hour=0.06, baseline_idle_drain_per_hour=0.02, baseline_idle_observations=30
    )  # tripled, but by 0.04 points an hour
    jumped = VehiclePatternFactory(
        avg_idle_drain_per_hour=0.9, baseline_idle_drain_per_hour=0.2, baseline_idle_observations=30
    )
    assert [j.pattern.pk for j in idle_drain_jumps()] == [jumped.pk]


@pytest.mark.django_db
def test_operations_page_uses_the_threshold_parameter(staff_client):
    PredictionFactory(booking=BookingFactory(scheduled_start=_soon(3)), predicted_battery=25, confidence_lower=22)
    assert len(staff_client.get("/admin/dashboard/operations/").context["low"]) == 0  # default 20
    response = staff_client.get("/admin/dashboard/operations/", {"threshold": "30"})
    assert len(response.context["low"]) == 1
    bad = staff_client.get("/admin/dashboard/operations/", {"threshold": "500", "days": "x"})
    assert bad.status_code == 200 and bad.context["threshold"] == 20


# --- models -------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_models_page_shows_holdout_figures_side_by_side_and_the_champion(staff_client):
    common = {"artifact_path": "x.json", "artifact_sha256": "0" * 64, "source": "outcomes"}
    ModelVersion.objects.create(
        version="old", status=ModelStatus.RETIRED, holdout_metrics={"mae": 3.2, "coverage_95": 0.91}, **common
    )
    ModelVersion.objects.create(
        version="new",
        status=ModelStatus.CHAMPION,
        holdout_metrics={"mae": 2.9, "coverage_95": 0.95, "gap": {"mae": 2.1}},
        **common,
    )
    response = staff_client.get("/admin/dashboard/models/")
    overview = response.context["overview"]
    assert [r.model.version for r in overview.rows] == ["new", "old"]
    assert overview.rows[0].holdout[1] == 2.9 and overview.rows[1].holdout[1] == 3.2
    assert overview.rows[0].segment_mae["gap"] == 2.1
    assert overview.champion.version == "new"
    assert overview.champion_serving is False  # no artifact on disk: registered, not serving
    assert "did not load" in response.content.decode()


@pytest.mark.django_db
def test_retrain_button_queues_the_task_on_the_training_cluster(staff_client, django_capture_on_commit_callbacks):
    with (
        mock.patch("django_q.tasks.async_task") as async_task,
        django_capture_on_commit_callbacks(execute=True) as callbacks,
    ):
        response = staff_client.post("/admin/dashboard/models/retrain/")
    assert response.status_code == 302 and response["Location"] == "/admin/dashboard/models/"
    assert len(callbacks) == 1
    async_task.assert_called_once_with("learning.tasks.model_retrain_weekly", cluster="training")
    assert not ModelVersion.objects.exists()  # nothing trained inside the request
    assert staff_client.get("/admin/dashboard/models/retrain/").status_code == 405


# --- deliveries ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_deliveries_page_counts_lists_attempts_and_events(post, staff_client):
    assert post(URL["created"], CREATED).status_code in (200, 201)
    old_pending = CallbackOutboxFactory(status=CallbackStatus.PENDING, age=timedelta(minutes=90))
    CallbackOutboxFactory(status=CallbackStatus.PENDING, age=timedelta(minutes=5))
    failed = CallbackOutboxFactory(status=CallbackStatus.FAILED, age=timedelta(minutes=600), attempts=2)
    CallbackAttempt.objects.create(
        outbox=failed, number=1, started_at=timezone.now(), webhook_timestamp=1, status_code=500, duration_ms=12
    )
    CallbackAttempt.objects.create(
        outbox=failed, number=2, started_at=timezone.now(), webhook_timestamp=2, status_code=503, duration_ms=9
    )
    CallbackOutboxFactory(status=CallbackStatus.DELIVERED, age=timedelta(minutes=30), delivered_at=timezone.now())

    response = staff_client.get("/admin/dashboard/deliveries/")

    summary = response.context["summary"]
    assert summary.counts == {"pending": 2, "delivered": 1, "failed": 1, "superseded": 0}
    assert summary.oldest_pending_at == old_pending.created_at
    html = response.content.decode()
    assert "500 (12 ms), 503 (9 ms)" in html
    assert [e.event_type for e in response.context["events"]] == ["booking.created"]
    only_failed = staff_client.get("/admin/dashboard/deliveries/", {"status": "failed"}).context["callbacks"]
    assert [c.pk for c in only_failed] == [failed.pk]


@pytest.mark.django_db
def test_redeliver_makes_a_failed_callback_due_now(staff_client, django_capture_on_commit_callbacks):
    failed = CallbackOutboxFactory(status=CallbackStatus.FAILED, age=timedelta(minutes=600), attempts=9)
    with django_capture_on_commit_callbacks() as queued:
        response = staff_client.post("/admin/dashboard/deliveries/redeliver/", {"outbox_id": [str(failed.pk)]})
    assert response.status_code == 302
    failed.refresh_from_db()
    assert failed.status == CallbackStatus.PENDING and failed.next_attempt_at <= timezone.now()
    assert len(queued) == 1
    bad = staff_client.post("/admin/dashboard/deliveries/redeliver/", {"outbox_id": ["not-a-uuid"]}, follow=True)
    assert bad.status_code == 200 and "not valid" in bad.content.decode()


@pytest.mark.django_db
def test_models_page_shows_the_latest_drift_check_most_drifted_feature_first(staff_client):
    from learning.models import DriftCheck

    model = ModelVersion.objects.create(
        version="m-drift", status=ModelStatus.CHAMPION, artifact_path="x.json", artifact_sha256="0" * 64
    )
    now = timezone.now()
    window = {"window_start": now - timedelta(days=7), "window_end": now}
    DriftCheck.objects.create(model_version=model, checked_at=now - timedelta(days=7), status="ok", **window)
    DriftCheck.objects.create(
        model_version=model,
        checked_at=now,
        status="drift",
        max_psi=0.61,
        worst_feature="gap.hours",
        features={
            "gap": {"hours": {"psi": 0.61, "status": "drift"}, "month": {"psi": 0.02, "status": "ok"}},
            "trip": {"hours": {"psi": 0.12, "status": "warn"}},
        },
        **window,
    )
    with mock.patch("dashboard.selectors.models_page.model_champion", return_value=(model, True)):
        response = staff_client.get("/admin/dashboard/models/")
    row = response.context["overview"].rows[0]
    assert row.drift.status == "drift"
    assert [(f.kind, f.name) for f in row.drift_features] == [("gap", "hours"), ("trip", "hours"), ("gap", "month")]
    html = response.content.decode()
    assert 'id="drift-features"' in html and "gap.hours" in html


@pytest.mark.django_db
def test_a_car_id_with_a_slash_has_a_timeline_and_its_links_work(staff_client):
    car = VehicleFactory(external_id="fleet/42")
    PredictionFactory(booking=BookingFactory(vehicle=car, scheduled_start=_soon(3)), predicted_battery=5)

    assert (
        'href="/admin/dashboard/cars/fleet/42/timeline/"'
        in staff_client.get("/admin/bookings/vehicle/").content.decode()
    )
    assert (
        'href="/admin/dashboard/cars/fleet/42/timeline/"'
        in staff_client.get("/admin/dashboard/operations/").content.decode()
    )
    response = staff_client.get("/admin/dashboard/cars/fleet/42/timeline/")
    assert response.status_code == 200 and response.context["timeline"].vehicle == car
    assert staff_client.get("/admin/dashboard/cars/no%00car/timeline/").status_code == 404


@pytest.mark.django_db
def test_timeline_window_from_one_end_is_three_weeks_inclusive(staff_client):
    car = VehicleFactory(external_id="9")
    url = "/admin/dashboard/cars/9/timeline/"

    only_until = staff_client.get(url, {"until": "2025-11-06"}).context["timeline"]
    assert (only_until.since.date().isoformat(), only_until.until.date().isoformat()) == ("2025-10-17", "2025-11-07")
    only_since = staff_client.get(url, {"since": "2025-11-01"}).context["timeline"]
    assert (only_since.since.date().isoformat(), only_since.until.date().isoformat()) == ("2025-11-01", "2025-11-22")
    BatteryReadingFactory(vehicle=car, recorded_at=datetime(2025, 11, 6, 23, 0, tzinfo=UTC))
    assert len(staff_client.get(url, {"since": "2025-11-06", "until": "2025-11-06"}).context["timeline"].readings) == 1

    for bad in ({"since": "abc"}, {"since": "2025-01-01", "until": "2025-12-01"}, {"since": "1900-01-01"}):
        response = staff_client.get(url, bad)
        assert response.status_code == 200 and 'class="errorlist' in response.content.decode(), bad


@pytest.mark.django_db
def test_accuracy_refuses_dates_the_service_never_holds(staff_client):
    for bad in ({"end": "9999-12-31"}, {"start": "0001-01-01", "end": "0001-01-02"}):
        response = staff_client.get("/admin/dashboard/accuracy/", bad)
        assert response.status_code == 200 and response.context["report"] is None
        assert "Choose dates between" in response.content.decode()


@pytest.mark.django_db
def test_the_actions_need_the_csrf_token(django_capture_on_commit_callbacks):
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(get_user_model().objects.create_superuser("ops2", "o@example.com", "pw-for-tests"))
    with django_capture_on_commit_callbacks() as queued:
        assert client.post("/admin/dashboard/models/retrain/").status_code == 403
        assert client.post("/admin/dashboard/deliveries/redeliver/", {"outbox_id": ["x"]}).status_code == 403
    assert queued == []
