"""Admin login throttling (django-axes): repeated wrong passwords lock that username from that address for a while."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings as django_settings
from django.db.models import F
from django.test import Client

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/"
PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def staff(settings, django_user_model):
    """A superuser with a password; a fast hasher, since each login attempt hashes (the real one costs ~0.5 s)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return django_user_model.objects.create_superuser("ops", "ops@example.com", PASSWORD)


def attempt(client: Client, password: str, *, username: str = "ops", address: str = "10.0.0.5"):
    return client.post(LOGIN, {"username": username, "password": password, "next": "/admin/"}, REMOTE_ADDR=address)


def logged_in(client: Client) -> bool:
    return client.get("/admin/").status_code == 200


def test_the_defaults_lock_a_username_from_one_address_after_five_failures_for_15_minutes():
    assert django_settings.AXES_FAILURE_LIMIT == 5
    assert django_settings.AXES_COOLOFF_TIME.total_seconds() == 15 * 60
    assert django_settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]
    assert django_settings.AUTHENTICATION_BACKENDS[0] == "axes.backends.AxesStandaloneBackend"


def test_the_right_password_before_the_limit_logs_in_and_forgets_the_failures(staff):
    client = Client()
    for _ in range(django_settings.AXES_FAILURE_LIMIT - 1):
        assert attempt(client, "wrong").status_code == 200  # the form again, with its error

    response = attempt(client, PASSWORD)

    assert (response.status_code, response["Location"]) == (302, "/admin/")
    assert logged_in(client)
    assert not AccessAttempt.objects.filter(failures_since_start__gt=0).exists()  # AXES_RESET_ON_SUCCESS


def test_after_the_limit_even_the_right_password_is_refused_with_a_429(staff):
    client = Client()
    answers = [attempt(client, "wrong").status_code for _ in range(django_settings.AXES_FAILURE_LIMIT)]
    assert answers == [200] * (django_settings.AXES_FAILURE_LIMIT - 1) + [429]

    locked = attempt(client, PASSWORD)

    assert locked.status_code == 429
    assert b"too many login attempts" in locked.content
    assert not logged_in(client)
    assert AccessAttempt.objects.get().failures_since_start == django_settings.AXES_FAILURE_LIMIT + 1


def test_the_lock_holds_that_username_from_that_address_only(staff, django_user_model):
    django_user_model.objects.create_superuser("ops2", "ops2@example.com", PASSWORD)
    for _ in range(django_settings.AXES_FAILURE_LIMIT):
        attempt(Client(), "wrong")

    assert attempt(Client(), PASSWORD).status_code == 429
    from_elsewhere = Client()
    assert attempt(from_elsewhere, PASSWORD, address="10.0.0.6").status_code == 302  # not locked out by a stranger
    assert logged_in(from_elsewhere)
    assert attempt(Client(), PASSWORD, username="ops2").status_code == 302


def test_after_the_cool_off_the_right_password_works_again(staff):
    for _ in range(django_settings.AXES_FAILURE_LIMIT):
        attempt(Client(), "wrong")
    assert attempt(Client(), PASSWORD).status_code == 429

    cooled_off = django_settings.AXES_COOLOFF_TIME + timedelta(seconds=1)
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - cooled_off)
    client = Client()

    assert attempt(client, PASSWORD).status_code == 302
    assert logged_in(client)


def test_the_limit_and_cool_off_are_settings(staff, settings):
    settings.AXES_FAILURE_LIMIT = 2
    client = Client()

    assert [attempt(client, "wrong").status_code for _ in range(2)] == [200, 429]
    assert attempt(client, PASSWORD).status_code == 429
