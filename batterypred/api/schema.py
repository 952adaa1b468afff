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

from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.permissions import AllowAny


class ErrorSerializer(serializers.Serializer):
    """The body of every 4xx answer (see `batterypred/api/errors.py`)."""

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
    429: "Too many requests for this API key; retry after the `Retry-After` header's seconds.",
}

ERROR_RESPONSE_409 = OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[409])

BODY_METHODS = {"POST", "PUT", "PATCH"}


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
