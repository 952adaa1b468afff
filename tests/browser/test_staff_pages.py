"""A real browser on the staff pages: log in as staff, open the accuracy page, a car timeline and the
operations page, and check the charts were drawn with data points and the at-risk list is shown.
Screenshots go to `artifacts/screenshots/` (or `$SCREENSHOT_DIR`) for a human to look at.

Debian's chromium drives the pages through Playwright (`make test` installs chromium when it is missing).
A missing browser fails the test rather than skipping it: the charts must be proven, not assumed.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from bookings.models import BookingStatus, ReadingSource
from callbacks.models import CallbackItem
from tests.factories import (
    BatteryReadingFactory,
    BookingFactory,
    CallbackOutboxFactory,
    PredictionFactory,
    VehicleFactory,
)

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
# Flags for a sandboxed machine without a network: no background connections, no GPU, no first-run UI.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(os.environ.get("SCREENSHOT_DIR", Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"))
PASSWORD = "browser-test-pw"

# Counts the points a chart holds and the canvas pixels that are not blank.
CHART_STATE = """(id) => {
  const chart = Chart.getChart(id);
  const canvas = document.getElementById(id);
  const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted++;
  const points = chart.data.datasets.reduce(
    (n, d) => n + d.data.filter((p) => p !== null && (typeof p !== 'object' || p.y !== null)).length, 0);
  return {points, painted, datasets: chart.data.datasets.length};
}"""


def _readiness(predicted: float, required: float) -> dict:
    """Readiness numbers of the right shape for the seeded rows (not the service's formula: the page is tested)."""
    probability = round(min(0.99, max(0.01, 0.5 + (predicted - required) / 30)), 3)
    return {"required_level": required, "probability_ready": probability, "at_risk": probability < 0.9}


def _seed_month(*, cars: int = 3, days: int = 28, seed: int = 5) -> str:
    """Four weeks of scored bookings (one a day per car, inside the page's default 30 days), readings
    and a few upcoming bookings, all at risk (one that no charge saves, one with swap suggestions);
    returns a car's id."""
    rng = random.Random(seed)
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    for c in range(cars):
        car = VehicleFactory(external_id=f"car-{c}")
        level = 80.0
        for day in range(days, 0, -1):
            start = now - timedelta(days=day, hours=rng.randint(0, 12))
            actual = max(5.0, min(100.0, level - rng.uniform(0, 6)))
            booking = BookingFactory(
                vehicle=car,
                scheduled_start=start,
                scheduled_end=start + timedelta(hours=2),
                status=BookingStatus.COMPLETED,
                battery_at_start=round(actual, 1),
                actual_start=start,
            )
            predicted = max(0.0, min(100.0, actual + rng.gauss(0, 5)))
            PredictionFactory(
                booking=booking,
                predicted_battery=round(predicted, 1),
                actual_battery=round(actual, 1),
                predicted_at=start - timedelta(hours=rng.choice([1, 8, 40])),
                model_version=rng.choice(["m-2026-10", "m-2026-11"]),
                **_readiness(predicted, rng.choice([20.0, 30.0, 40.0])),
            )
            BatteryReadingFactory(
                vehicle=car, level=round(actual, 1), recorded_at=start, source=ReadingSource.BOOKING_STARTED
            )
            level = max(10.0, actual - rng.uniform(5, 25))
            BatteryReadingFactory(vehicle=car, level=round(level, 1), recorded_at=start + timedelta(hours=2))
            if rng.random() < 0.4:
                level = min(100.0, level + 40)
        for ahead in (6, 30):
            unreachable = c == 0 and ahead == 30
            upcoming = PredictionFactory(
                booking=BookingFactory(vehicle=car, scheduled_start=now + timedelta(hours=ahead)),
                predicted_battery=55,
                **_readiness(55, 60),
                charge_needed=20.0 + c,
                plug_in_by=None if unreachable else now + timedelta(hours=ahead - 4 - c),
            )
            if c == 0 and ahead == 6:
                body = {
                    "booking": {"booking_id": upcoming.booking_external_id},
                    "suggested_vehicles": [
                        {"vehicle_id": "car-1", "probability_ready": 0.97},
                        {"vehicle_id": "car-2", "probability_ready": 0.93},
                    ],
                }
                row = CallbackOutboxFactory(event="booking.readiness_changed", body=json.dumps(body))
                CallbackItem.objects.create(
                    outbox=row, booking_external_id=upcoming.booking_external_id, sequence=upcoming.pk
                )
    return "car-0"


@pytest.fixture
def seeded_car(transactional_db) -> str:
    """The data and the staff account, written before Playwright starts.

    Playwright's sync API runs its event loop in this thread, and the ORM keys connections by context: a
    query made once it runs would open a second connection that the test database's teardown cannot close.
    """
    car = _seed_month()
    get_user_model().objects.create_superuser("staff", "staff@example.com", PASSWORD)
    return car


@pytest.fixture
def browser_page(live_server, seeded_car, monkeypatch):
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.fail(f"chromium not found at {CHROMIUM}: install Debian's chromium package (make test does)")
    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes stay synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        # Every script, style and page must load; the browser's own favicon probe on the login page may 404.
        page.on(
            "response",
            lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 and "favicon" not in r.url else None,
        )
        yield page, errors
        browser.close()


def _log_in(page, base: str, next_url: str) -> None:
    page.goto(f"{base}/admin/login/?next={next_url}")
    page.fill("#id_username", "staff")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}{next_url}*")


def _charts_drawn(page, ids: list[str]) -> dict[str, dict]:
    page.wait_for_function("document.documentElement.dataset.chartsReady === 'true'", timeout=15_000)
    return {chart_id: page.evaluate(CHART_STATE, chart_id) for chart_id in ids}


@pytest.mark.django_db(transaction=True)
def test_staff_sees_accuracy_charts_and_a_car_timeline_with_data_points(live_server, seeded_car, browser_page):
    page, errors = browser_page
    car = seeded_car

    _log_in(page, live_server.url, "/admin/dashboard/accuracy/")
    assert page.locator("#fig-count").inner_text() == "84"  # 3 cars x 28 days
    accuracy = _charts_drawn(page, ["chart-mae", "chart-within10", "chart-coverage", "chart-histogram"])
    page.screenshot(path=str(SCREENSHOTS / "accuracy.png"), full_page=True)
    for chart_id, state in accuracy.items():
        assert state["points"] > 0, (chart_id, state)
        assert state["painted"] > 1000, (chart_id, state)
    assert accuracy["chart-mae"]["datasets"] == 2  # one line per model version
    assert accuracy["chart-coverage"]["datasets"] == 3  # and the promised 95 % line

    readiness = _charts_drawn(page, ["chart-reliability", "chart-brier"])
    for chart_id, state in readiness.items():
        assert state["points"] > 0, (chart_id, state)
        assert state["painted"] > 1000, (chart_id, state)
    assert page.locator("#fig-readiness-count").inner_text() == "84"
    assert page.locator("#reliability tbody tr").count() == 10

    page.goto(f"{live_server.url}/admin/dashboard/cars/{car}/timeline/")
    timeline = _charts_drawn(page, ["chart-timeline"])["chart-timeline"]
    page.screenshot(path=str(SCREENSHOTS / "car-timeline.png"), full_page=True)
    assert timeline["datasets"] == 5  # readings, intervals, predicted, plug-in deadlines, actual
    assert timeline["points"] >= 14 * 2 + 14  # two weeks of readings and actual levels at least
    assert timeline["painted"] > 1000
    assert page.locator("#timeline-bookings tbody tr").count() >= 14
    deadlines = page.evaluate("Chart.getChart('chart-timeline').data.datasets[3].data.filter((p) => p.y !== null)")
    assert len(deadlines) == 2 and deadlines[0]["label"].startswith("plug in by ")  # top and bottom of one line
    assert page.locator("#timeline-bookings td.plug-in-by", has_text="(+20.0 pts)").count() == 1  # the 6 h booking
    assert page.locator("#timeline-bookings td.plug-in-by", has_text="cannot reach in time").count() == 1

    page.goto(f"{live_server.url}/admin/dashboard/operations/")
    at_risk = page.locator("#at-risk tbody tr")
    at_risk.first.wait_for(state="visible")
    page.screenshot(path=str(SCREENSHOTS / "operations.png"), full_page=True)
    assert at_risk.count() == 6  # two upcoming bookings of each of 3 cars
    assert at_risk.nth(0).locator("td.plug-in-by").inner_text() == "cannot reach in time"
    assert "car-1 (97 %), car-2 (93 %)" in page.locator("#at-risk td.swaps").all_inner_texts()
    assert page.locator("#at-risk td.swaps", has_text="—").count() == 5

    assert errors == []
    for name in ("accuracy.png", "car-timeline.png", "operations.png"):
        assert (SCREENSHOTS / name).stat().st_size > 10_000, name
