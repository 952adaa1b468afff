"""API keys, rate limits, the staff-only admin and the production secret-key guard."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient
from rest_framework_api_key.models import APIKey

from batterypred.api import throttling
from batterypred.api.throttling import APIKeyRateThrottle
from tests.seed_examples import PREDICT_REAL_TIME, URL

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("post", URL["predict"]),
        ("post", URL["batch"]),
        ("post", URL["created"]),
        ("post", URL["cancelled"]),
        ("get", "/api/v1/predictions/BK1"),
        ("get", "/api/v1/vehicle/78/timeline"),
        ("get", "/api/v1/model/info"),
    ],
)
def test_every_api_call_without_a_key_is_401(method, url):
    response = getattr(APIClient(), method)(url, {}, format="json")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "X-API-Key"
    assert response.json()["error"] == "not_authenticated"


def test_a_wrong_or_revoked_key_is_401(api_key):
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=api_key + "x")
    assert client.post(URL["predict"], PREDICT_REAL_TIME, format="json").status_code == 401

    APIKey.objects.update(revoked=True)
    client.credentials(HTTP_X_API_KEY=api_key)
    assert client.post(URL["predict"], PREDICT_REAL_TIME, format="json").status_code == 401


def test_keys_are_stored_hashed():
    _, key = APIKey.objects.create_key(name="x")
    assert key not in APIKey.objects.get().hashed_key


def test_over_the_rate_a_key_gets_429_with_retry_after(api, monkeypatch):
    monkeypatch.setattr(APIKeyRateThrottle, "THROTTLE_RATES", {"api_key": "3/min"})
    monkeypatch.setattr(throttling, "clock", lambda: 6000.0 + 15)  # 15 s into a minute window
    codes = [api.get("/api/v1/model/info").status_code for _ in range(4)]

    assert codes == [200, 200, 200, 429]
    limited = api.get("/api/v1/model/info")
    assert limited["Retry-After"] == "45"
    assert limited.json()["error"] == "throttled"

    monkeypatch.setattr(throttling, "clock", lambda: 6060.0 + 1)  # the next window
    assert api.get("/api/v1/model/info").status_code == 200

    other = APIClient()
    other.credentials(HTTP_X_API_KEY=APIKey.objects.create_key(name="other")[1])
    assert other.get("/api/v1/model/info").status_code == 200  # the limit is per key


def test_health_needs_no_key():
    response = APIClient().get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "healthy", "database": "ok"}


def test_the_admin_needs_a_staff_login(client, django_user_model):
    assert client.get("/admin/").status_code == 302
    django_user_model.objects.create_user("renter", password="pw-123456789")
    client.login(username="renter", password="pw-123456789")
    assert client.get("/admin/bookings/booking/").status_code == 302
    django_user_model.objects.create_superuser("staff", password="pw-123456789")
    client.login(username="staff", password="pw-123456789")
    for page in [
        "/admin/",
        "/admin/bookings/booking/",
        "/admin/predictions/prediction/",
        "/admin/learning/vehiclepattern/",
        "/admin/learning/accuracymetric/",
        "/admin/bookings/inboundevent/",
    ]:
        assert client.get(page).status_code == 200, page


def test_create_api_key_prints_a_working_key_alone_on_the_last_line(capsys):
    call_command("create_api_key", "laravel")

    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert APIKey.objects.is_valid(key)
    assert APIKey.objects.get().name == "laravel"


def _settings_load(env: dict) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('started')"],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "batterypred.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_to_start_without_a_real_secret_key():
    refused = _settings_load({"DJANGO_DEBUG": "0"})
    assert refused.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in refused.stderr

    started = _settings_load({"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "k" * 50})
    assert started.returncode == 0, started.stderr
    assert "started" in started.stdout


def test_a_verified_key_is_remembered_briefly_and_a_revoked_one_stops_working(api_key, settings):
    from django.core.cache import cache

    client = APIClient()
    client.credentials(HTTP_X_API_KEY=api_key)
    assert client.get("/api/v1/model/info").status_code == 200
    APIKey.objects.update(revoked=True)

    assert client.get("/api/v1/model/info").status_code == 200  # within API_KEY_CACHE_SECONDS
    assert not any(api_key in str(k) for k in cache._cache)  # remembered by hash, not by the key

    cache.clear()  # the TTL has passed
    assert client.get("/api/v1/model/info").status_code == 401

    settings.API_KEY_CACHE_SECONDS = 0
    APIKey.objects.update(revoked=False)
    assert client.get("/api/v1/model/info").status_code == 200
    APIKey.objects.update(revoked=True)
    assert client.get("/api/v1/model/info").status_code == 401
