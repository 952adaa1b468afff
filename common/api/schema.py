"""OpenAPI generation: every operation documents the error answers it can give, in the one error shape.

Laravel's client and the property-based tests (tests/test_schemathesis.py) read `/api/schema/` as the contract, so
a 400 or 401 the schema does not mention is a contract bug. Rather than repeat the same five declarations on every
view (and forget them on the next one), this schema class derives them from what the view is built from:

- 401 when the view needs an API key (and, on the event webhooks, a signature when ML_INBOUND_SECRET is set);
- 429 when the view is rate limited;
- 400 when it reads a body, query parameters or a path id (validation), 415 when it reads a body (wrong
  Content-Type);
- 404 when its path names an object.

Answers that depend on the business rules (409 for a booking that belongs to another car) are declared on the
view with `extend_schema(responses={409: ERROR_RESPONSE_409, ...})`. A code a view already declares is left as is.
"""

import threading
from typing import Any, ClassVar

from django.conf import settings
from django.utils import translation
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.permissions import AllowAny


class ErrorSerializer(serializers.Serializer):
    """The body of every 4xx answer (see `common/api/errors.py`)."""

    status = serializers.CharField(help_text='Always "error".')
    error = serializers.CharField(
        help_text="Machine-readable code, e.g. validation_error, not_authenticated, not_found, vehicle_mismatch, "
        "invalid_signature, throttled."
    )
    detail = serializers.CharField(help_text="What is wrong and where (validation errors: `<field path>: <reason>`).")
    fields = serializers.DictField(
        help_text="Per-field messages, keyed by field name (nested for nested bodies); empty when no field is to blame."
    )

    class Meta:
        ref_name = "Error"


ERROR_DESCRIPTIONS = {
    400: "The body, a query parameter or a path id is invalid; `fields` says which and why. Nothing was changed.",
    401: "No API key in X-API-Key, or an unknown, revoked or expired one.",
    404: "No such object.",
    409: "The booking belongs to another car (`vehicle_id`); nothing was changed.",
    415: "The body is not `application/json`.",
    422: (
        "The webhook-id or Idempotency-Key was already used with another body (`idempotency_key_reused`); "
        "nothing was applied."
    ),
    429: "Too many requests for this API key; retry after the `Retry-After` header's seconds.",
}

ERROR_RESPONSE_409 = OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[409])
ERROR_RESPONSE_422 = OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[422])

BODY_METHODS = {"POST", "PUT", "PATCH"}


class APIKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """`X-API-Key` as the OpenAPI security scheme `ApiKeyAuth`, derived from each view's authentication class.

    Registered by being defined (this module is the DEFAULT_SCHEMA_CLASS's, imported before any schema is built).
    Without it drf-spectacular warns on every view, and `manage.py check --deploy` fails on those warnings.
    """

    target_class = "common.api.permissions.APIKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema) -> dict[str, str]:
        from common.api.permissions import HEADER

        return {"type": "apiKey", "in": "header", "name": HEADER}


class AutoSchema(SpectacularAutoSchema):
    def get_operation(self, path, path_regex, path_prefix, method, registry) -> dict[str, Any] | None:
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        responses = operation.setdefault("responses", {})
        for code in self._error_codes(operation):
            if str(code) not in responses:
                responses[str(code)] = self._error_response(code)
        return operation

    def _error_codes(self, operation: dict[str, Any]) -> list[int]:
        codes = []
        parameters = operation.get("parameters", [])
        has_body = self.method in BODY_METHODS
        if has_body or any(p.get("in") in ("query", "path") for p in parameters):
            codes.append(400)
        if not all(isinstance(permission, AllowAny) for permission in self.view.get_permissions()):
            codes.append(401)
        if any(p.get("in") == "path" for p in parameters):
            codes.append(404)
        if has_body:
            codes.append(415)
        if self.view.get_throttles():
            codes.append(429)
        return codes

    def _error_response(self, code: int) -> dict[str, Any]:
        component = self.resolve_serializer(ErrorSerializer, "response")
        description = ERROR_DESCRIPTIONS[code]
        if code == 401 and getattr(self.view, "event_type", None):
            description += " Also when ML_INBOUND_SECRET is set and the signature is missing, wrong or stale."
        return {"description": description, "content": {"application/json": {"schema": component.ref}}}


class CachedSchemaGenerator(SchemaGenerator):
    """The `/api/schema/` view's generator: builds the schema once per process, version and language.

    Generating walks every view and serializer (about 20 ms here, 150 ms on a cold process) and its result
    depends only on the code, never on the request (the schema is public, so no permission filtering), so the
    generated document is kept and only rendered per request; the bytes served are the same as before. The
    language is reduced to a supported one (unknown `?lang=` values fall back, as Django's translations do), so
    the cache holds at most one schema per configured language and cannot be grown from outside.
    `manage.py spectacular` keeps using the plain generator.
    """

    _schemas: ClassVar[dict[tuple, dict]] = {}
    _lock = threading.Lock()

    def get_schema(self, request=None, public: bool = False) -> dict:
        try:
            language = translation.get_supported_language_variant(translation.get_language() or "")
        except LookupError:
            language = settings.LANGUAGE_CODE
        key = (self.api_version, public, language)
        schema = self._schemas.get(key)
        if schema is None:
            with self._lock:  # one build per key, even when the first requests arrive together
                schema = self._schemas.get(key)
                if schema is None:
                    schema = self._schemas[key] = super().get_schema(request=request, public=public)
        return schema

    @classmethod
    def forget(cls) -> None:
        """Drop every cached schema (for tests that change what the schema is built from)."""
        cls._schemas.clear()
