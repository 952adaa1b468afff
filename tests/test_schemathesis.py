"""Property-based API tests: every operation in /api/schema/, fed generated valid and invalid requests.

Each operation must never answer 5xx, and every answer must be one the schema declares (status code, content
type, body shape). The schema is the contract Laravel codes against, so a mismatch is a bug in the schema or the
view. By default examples are bounded and derandomized so CI is reproducible and quick; set
SCHEMATHESIS_MAX_EXAMPLES (e.g. 500) to search harder, with fresh random examples on every run.

SCHEMATHESIS_SURVEY=<file.jsonl> (used by bench.schemathesis_deep) counts instead of stopping: each example's
answer and failed checks go to the file as one JSON line (a 5xx with the request and the server's traceback), and
the test never fails on a check, so every example runs rather than the search ending at the first failure. Each
example then runs in a savepoint that a 5xx rolls back, so one failed query cannot turn every later answer into a
500 on Postgres.
"""

import json
import os
import traceback

import pytest
import schemathesis
from django.core.signals import got_request_exception, request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from batterypred.wsgi import application
from bookings.models import InboundEvent
from tests.seed_examples import PREDICT_REAL_TIME, URL

SEARCH_EXAMPLES = os.environ.get("SCHEMATHESIS_MAX_EXAMPLES")
MAX_EXAMPLES = int(SEARCH_EXAMPLES or 25)
SURVEY = os.environ.get("SCHEMATHESIS_SURVEY")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

schema = schemathesis.openapi.from_wsgi("/api/schema/", application)


@pytest.fixture(autouse=True)
def _keep_the_test_transaction():
    """Run the WSGI app inside the test's transaction, as Django's own test client does.

    The app's request signals would otherwise close the connection mid-test (it is not in autocommit inside the
    test transaction), losing the rows the test's API key and earlier calls wrote.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.mark.django_db
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=not SEARCH_EXAMPLES,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_answers_within_its_schema(case, api_key):
    if SURVEY:
        _survey(case, api_key, SURVEY)
        return
    case.call_and_validate(headers={"X-API-Key": api_key}, checks=CHECKS)


def _survey(case, api_key: str, path: str) -> None:
    """Call and check one example, append what happened to the survey file, raise nothing."""
    tracebacks: list[str] = []

    def _keep_traceback(sender, **kwargs):
        tracebacks.append(traceback.format_exc())

    got_request_exception.connect(_keep_traceback)
    try:
        # A savepoint per example, undone after a 5xx: on Postgres a failed query leaves the test's transaction
        # aborted, and every later example would count the same bug again as its own 500.
        with transaction.atomic():
            response = case.call(headers={"X-API-Key": api_key})
            if response.status_code >= 500:
                transaction.set_rollback(True)
    finally:
        got_request_exception.disconnect(_keep_traceback)
    failed: list[str] = []
    try:
        case.validate_response(response, checks=CHECKS, headers={"X-API-Key": api_key})
    except BaseExceptionGroup as group:
        failed = [getattr(failure, "title", type(failure).__name__) for failure in group.exceptions]
    except Exception as failure:  # noqa: BLE001 - a check's failure is what the survey records
        failed = [getattr(failure, "title", type(failure).__name__)]
    record = {
        "operation": case.operation.label,
        "method": case.method.upper(),
        "status": response.status_code,
        "failed": failed,
    }
    if response.status_code >= 500 or failed:
        request = response.request
        body = request.body
        record["request"] = {
            "method": request.method,
            "url": request.url,
            "headers": {k: v for k, v in request.headers.items() if k.lower() != "x-api-key"},
            "body": body.decode("utf-8", "backslashreplace") if isinstance(body, bytes) else body,
        }
        record["response"] = response.content[:2000].decode("utf-8", "backslashreplace")
        record["traceback"] = tracebacks[-1] if tracebacks else None
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(record) + "\n")


# Regressions the property-based run found, pinned as plain examples so they are checked on every run.


@pytest.mark.django_db
@pytest.mark.parametrize("at", ["0001-01-01T00:00:09+04:01", "9999-12-31T23:00:00-02:00", "1999-12-31T23:59:59Z"])
def test_timestamps_outside_the_supported_years_are_a_400(post, at):
    """Year 1 with a positive offset used to overflow while converting to UTC: a 500."""
    response = post(URL["predict"], {**PREDICT_REAL_TIME, "current_timestamp": at})

    assert response.status_code == 400, response.content
    assert response.json()["fields"] == {"current_timestamp": ["Must be between 2000-01-01 and 2099-12-31 (UTC)."]}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "raw",
    [
        b'{"booking_id": "BK1", "vehicle_id": 78, "note\\u0000": true}',
        b'{"booking_id": "BK1\\u0000", "vehicle_id": 78}',
        b'{"booking_id": "BK1", "vehicle_id": 78, "note": "\\ud800"}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=["nul-in-key", "nul-in-value", "lone-surrogate", "deep-nesting"],
)
def test_json_the_database_cannot_store_is_a_400_and_stores_nothing(api, raw):
    """Valid JSON with a NUL or a lone surrogate was accepted, then failed to insert on Postgres: a 500."""
    response = api.generic("POST", URL["cancelled"], raw, content_type="application/json")

    assert response.status_code == 400, response.content
    assert response.json()["error"] == "parse_error"
    assert not InboundEvent.objects.exists()
