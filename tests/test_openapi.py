"""The OpenAPI schema documents every endpoint, and the docs pages load nothing from a CDN."""

import re
from pathlib import Path

import pytest
import yaml
from django.test import Client

pytestmark = pytest.mark.django_db

PATHS = {
    "/api/v1/predict": "post",
    "/api/v1/predict/batch": "post",
    "/api/v1/predictions/{booking_id}": "get",
    "/api/v1/vehicle/{vehicle_id}/timeline": "get",
    "/api/v1/model/info": "get",
    "/api/v1/models": "get",
    "/api/v1/events/booking-created": "post",
    "/api/v1/events/booking-started": "post",
    "/api/v1/events/booking-ended": "post",
    "/api/v1/events/booking-modified": "post",
    "/api/v1/events/booking-cancelled": "post",
    "/health": "get",
}


def test_the_schema_documents_every_endpoint_with_its_bodies():
    response = Client().get("/api/schema/")

    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    assert schema["openapi"].startswith("3.")
    for path, method in PATHS.items():
        operation = schema["paths"][path][method]
        assert "200" in operation["responses"], path
    components = schema["components"]["schemas"]
    assert {"booking_id", "predicted_battery", "confidence_interval", "starts_at", "prediction_method"} <= set(
        components["AffectedBooking"]["properties"]
    )
    assert "cascade_steps" in components["PredictResponse"]["properties"]
    assert {"serving", "champion", "model_version", "accuracy"} <= set(components["ModelInfo"]["properties"])
    assert {"version", "status", "holdout_metrics", "calibration"} <= set(components["ModelVersion"]["properties"])
    assert schema["components"]["securitySchemes"]["ApiKeyAuth"]["name"] == "X-API-Key"


@pytest.mark.parametrize("page", ["/api/docs/", "/api/redoc/"])
def test_docs_pages_load_their_scripts_from_the_app(page):
    client = Client()
    response = client.get(page)

    assert response.status_code == 200
    html = response.content.decode()
    assert not re.search(r"(src|href)=\"https?://", html)
    assets = re.findall(r"(?:src|href)=\"(/static/[^\"]+)\"", html)
    assert assets
    for asset in assets:
        assert client.get(asset).status_code == 200, asset


def test_the_schema_is_generated_once_per_process_and_served_byte_for_byte_the_same(monkeypatch):
    from drf_spectacular.generators import SchemaGenerator

    from common.api.schema import CachedSchemaGenerator

    CachedSchemaGenerator.forget()
    builds = []
    generate = SchemaGenerator.get_schema

    def counted(self, *args, **kwargs):
        builds.append(1)
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(SchemaGenerator, "get_schema", counted)
    client = Client()

    first = client.get("/api/schema/")
    second = client.get("/api/schema/")
    as_json = client.get("/api/schema/?format=json")

    assert first.status_code == second.status_code == as_json.status_code == 200
    assert len(builds) == 1  # the second request and the JSON rendering reuse the generated document
    assert second.content == first.content
    assert yaml.safe_load(as_json.content) == yaml.safe_load(first.content)
    assert second["Content-Disposition"] == first["Content-Disposition"]

    CachedSchemaGenerator.forget()
    fresh = client.get("/api/schema/")
    assert len(builds) == 2
    assert fresh.content == first.content  # what is cached is exactly what generation gives


def test_an_unknown_language_shares_the_default_schema_and_cannot_grow_the_cache():
    from common.api.schema import CachedSchemaGenerator

    CachedSchemaGenerator.forget()
    client = Client()
    default = client.get("/api/schema/").content
    for code in ["zz", "xx-yy", "qq-" + "a" * 20]:
        assert client.get(f"/api/schema/?lang={code}").content == default

    assert len(CachedSchemaGenerator._schemas) <= 2  # the active language and LANGUAGE_CODE, never one per value


def test_the_served_schema_is_byte_for_byte_the_committed_one():
    """docs/openapi.yaml is the contract as published: a change to the API shows here first. After a deliberate
    change, regenerate it with `.venv/bin/python manage.py spectacular --file docs/openapi.yaml`."""
    committed = (Path(__file__).resolve().parents[1] / "docs" / "openapi.yaml").read_bytes()

    served = Client().get("/api/schema/")

    assert served.status_code == 200
    assert served.content == committed
