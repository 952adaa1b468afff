"""Shared fixtures: an API client carrying a real key, and guards for Postgres-only tests."""

import pytest
from django.core.cache import cache
from django.db import connection
from rest_framework.test import APIClient
from rest_framework_api_key.models import APIKey

from common.process_cache import forget_all
from learning.champion import champion_forget
from learning.feature_cache import feature_states_forget


@pytest.fixture(autouse=True)
def _clear_cache():
    """Rate-limit counters live in the cache, the fleet-wide tables in the process cache; each test starts with none."""
    cache.clear()
    forget_all()
    yield
    cache.clear()
    forget_all()


@pytest.fixture(autouse=True)
def _no_kept_feature_states():
    """The model features kept per process (learning.feature_cache) are keyed on rows each test rolls back."""
    feature_states_forget()
    yield
    feature_states_forget()


@pytest.fixture(autouse=True)
def _no_cached_champion():
    """The serving model is cached per process; each test sees only the champion its own database holds."""
    champion_forget()
    yield
    champion_forget()


@pytest.fixture(autouse=True)
def _no_compiling(settings):
    """Compiling a promoted model's boosters takes seconds; only the tests of compiling (which set
    MODEL_COMPILE themselves) pay for it. The compiled boosters give LightGBM's numbers."""
    settings.MODEL_COMPILE = False


@pytest.fixture(autouse=True)
def _postgres_only(request):
    if request.node.get_closest_marker("postgres") and connection.vendor != "postgresql":
        pytest.fail("this test needs Postgres: set DATABASE_URL (make test deselects it on SQLite)")


@pytest.fixture
def api_key(db) -> str:
    _, key = APIKey.objects.create_key(name="tests")
    return key


@pytest.fixture
def api(api_key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=api_key)
    return client


@pytest.fixture
def post(api):
    """POST a JSON body and return the response (asserting nothing)."""

    def _post(url: str, body, **headers):
        return api.post(url, body, format="json", **headers)

    return _post
