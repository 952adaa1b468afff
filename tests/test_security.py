"""API keys, rate limits, the staff-only admin and the production secret-key guard."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient
from rest_framework_api_key.models import APIKey

from common.api import throttling
from common.api.throttling import APIKeyRateThrottle
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
    client.force_login(django_user_model.objects.create_user("renter", password="pw-123456789"))
    assert client.get("/admin/bookings/booking/").status_code == 302
    django_user_model.objects.create_superuser("staff", password="pw-123456789")
    # Through the login form, as staff log in (django-axes watches it; `client.login` passes it no request).
    logged_in = client.post("/admin/login/", {"username": "staff", "password": "pw-123456789", "next": "/admin/"})
    assert (logged_in.status_code, logged_in["Location"]) == (302, "/admin/")
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


# What a production start needs besides the key: somewhere to send callbacks, and the secret that signs them.
CALLBACKS = {"ML_CALLBACK_URL": "https://laravel.example/api/ml/predictions-updated", "ML_WEBHOOK_SECRET": "s" * 40}
# A key Django's own deploy check accepts (50+ characters, 5+ different ones), as get_random_secret_key() makes.
REAL_KEY = "kD9#q2LmZ7vX!r4tB8nW0yPc6sFh1jGe3uAi5oTx-EwRbVzN_MlQ"


def _subprocess(args: list[str], env: dict) -> subprocess.CompletedProcess:
    """Run Python in a fresh process with only `env` on top of the settings-free environment."""
    prefixes = ("DJANGO_", "ML_", "METRICS_", "AXES_")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "batterypred.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _settings_load(env: dict) -> subprocess.CompletedProcess:
    return _subprocess(["-c", "import django; django.setup(); print('started')"], env)


def test_production_refuses_to_start_without_a_real_secret_key():
    refused = _settings_load({"DJANGO_DEBUG": "0", **CALLBACKS})
    assert refused.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in refused.stderr

    started = _settings_load({"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": REAL_KEY, **CALLBACKS})
    assert started.returncode == 0, started.stderr
    assert "started" in started.stdout


@pytest.mark.parametrize(
    "key",
    [
        "k" * 50,  # long, but one character: Django's deploy check calls it weak (security.W009)
        "x1y2z3" * 7,  # 42 characters
        "django-insecure-" + REAL_KEY,  # what startproject generates for development
    ],
)
def test_production_refuses_a_key_that_djangos_deploy_check_calls_weak(key):
    refused = _settings_load({"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": key, **CALLBACKS})

    assert refused.returncode != 0
    assert "ImproperlyConfigured" in refused.stderr and "at least 50 characters" in refused.stderr


def test_production_refuses_the_placeholder_key_of_env_example():
    [line] = [line for line in (ROOT / ".env.example").read_text().splitlines() if "DJANGO_SECRET_KEY=" in line]
    placeholder = line.split("DJANGO_SECRET_KEY=", 1)[1].strip()
    assert len(placeholder) >= 50 and len(set(placeholder)) >= 5  # refused for what it is, not for its length

    refused = _settings_load({"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": placeholder, **CALLBACKS})

    assert refused.returncode != 0
    assert "ImproperlyConfigured" in refused.stderr and ".env.example placeholder" in refused.stderr
    assert _settings_load({"DJANGO_DEBUG": "1", "DJANGO_SECRET_KEY": placeholder}).returncode == 0  # development


@pytest.mark.parametrize(
    "callbacks",
    [
        {},
        {"ML_CALLBACK_URL": CALLBACKS["ML_CALLBACK_URL"]},
        {"ML_WEBHOOK_SECRET": CALLBACKS["ML_WEBHOOK_SECRET"]},
    ],
    ids=["neither", "no-secret", "no-url"],
)
def test_production_refuses_to_start_when_callbacks_could_not_reach_laravel(callbacks):
    refused = _settings_load({"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": REAL_KEY, **callbacks})

    assert refused.returncode != 0
    assert "ImproperlyConfigured" in refused.stderr
    assert "ML_CALLBACK_URL and ML_WEBHOOK_SECRET must both be set" in refused.stderr
    assert _settings_load({"DJANGO_DEBUG": "1", **callbacks}).returncode == 0  # development starts (health degrades)


def test_production_without_callbacks_starts_when_it_says_so_and_then_queues_none():
    code = "import django; django.setup(); from django.conf import settings; print(repr(settings.ML_CALLBACK_URL))"
    env = {"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": REAL_KEY, "ML_CALLBACKS_DISABLED": "1"}

    assert _subprocess(["-c", code], env).stdout.strip().splitlines()[-1] == "''"
    left_over = _subprocess(["-c", code], {**env, "ML_CALLBACK_URL": CALLBACKS["ML_CALLBACK_URL"]})
    assert left_over.returncode == 0, left_over.stderr
    assert left_over.stdout.strip().splitlines()[-1] == "''"  # disabled means disabled


def test_the_production_settings_pass_djangos_deploy_check():
    """`manage.py check --deploy` with nothing but DEBUG off, a real key and the callback settings: no warning."""
    done = _subprocess(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        {"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": REAL_KEY, **CALLBACKS},
    )

    assert done.returncode == 0, done.stderr
    assert "System check identified no issues (0 silenced)." in done.stdout
    assert "WARNING" not in done.stderr


def _production_settings(env: dict, names: list[str] | None = None) -> dict:
    names = names or [
        "DEBUG",
        "SECURE_SSL_REDIRECT",
        "SECURE_HSTS_SECONDS",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SECURE_PROXY_SSL_HEADER",
        "CSRF_TRUSTED_ORIGINS",
    ]
    code = (
        "import json, django; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n) for n in {names!r}}}, default=str))"
    )
    done = _subprocess(["-c", code], {"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": REAL_KEY, **CALLBACKS, **env})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_production_is_https_only_and_the_proxy_switches_are_read_from_the_environment():
    default = _production_settings({})
    assert default["SECURE_SSL_REDIRECT"] is True and default["SECURE_HSTS_SECONDS"] >= 31_536_000
    assert default["SESSION_COOKIE_SECURE"] is default["CSRF_COOKIE_SECURE"] is True
    assert default["SECURE_PROXY_SSL_HEADER"] is None and default["CSRF_TRUSTED_ORIGINS"] == []

    behind_proxy = _production_settings(
        {
            "DJANGO_SECURE_PROXY_SSL_HEADER": "1",
            "DJANGO_CSRF_TRUSTED_ORIGINS": "https://ml.example.com,https://b.example",
        }
    )
    assert behind_proxy["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert behind_proxy["CSRF_TRUSTED_ORIGINS"] == ["https://ml.example.com", "https://b.example"]

    plain_http = _production_settings({"DJANGO_SECURE_SSL_REDIRECT": "0", "DJANGO_SECURE_COOKIES": "0"})
    assert plain_http["SECURE_SSL_REDIRECT"] is plain_http["SESSION_COOKIE_SECURE"] is False


def test_the_admin_login_throttle_is_configured_from_the_environment():
    env = {"AXES_FAILURE_LIMIT": "3", "AXES_COOLOFF_MINUTES": "60", "AXES_LOCKOUT_PARAMETERS": "ip_address,username"}

    read = _production_settings(env, ["AXES_FAILURE_LIMIT", "AXES_COOLOFF_TIME", "AXES_LOCKOUT_PARAMETERS"])

    assert read == {
        "AXES_FAILURE_LIMIT": 3,
        "AXES_COOLOFF_TIME": "1:00:00",
        "AXES_LOCKOUT_PARAMETERS": ["ip_address", "username"],
    }


def test_https_redirects_everything_but_the_probes(settings, api_key):
    """As production runs (SECURE_SSL_REDIRECT on): pages and the API go to HTTPS, the health and metrics probes
    of load balancers and Prometheus (plain HTTP, on loopback) are answered where they are."""
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31_536_000
    client = Client()  # its middleware is built with the settings above

    for url in ["/admin/login/", "/api/v1/model/info", "/api/docs/"]:
        response = client.get(url, HTTP_X_API_KEY=api_key)
        assert response.status_code == 301, url
        assert response["Location"] == f"https://testserver{url}"
    for url in ["/health", "/api/v1/health", "/metrics"]:
        assert client.get(url, HTTP_X_API_KEY=api_key).status_code == 200, url

    secure = client.get("/admin/login/", secure=True)
    assert secure.status_code == 200
    assert secure["Strict-Transport-Security"].startswith("max-age=31536000")


def test_behind_a_tls_proxy_its_forwarded_proto_counts_as_https(settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    client = Client()

    assert client.get("/admin/login/", HTTP_X_FORWARDED_PROTO="https").status_code == 200
    assert client.get("/admin/login/", HTTP_X_FORWARDED_PROTO="http").status_code == 301


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
