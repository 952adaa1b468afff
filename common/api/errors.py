"""One domain error type and the DRF exception handler that shapes every error body.

Every 4xx body is `{"status": "error", "error": <code>, "detail": <message>, "fields": {...}}`
so that Laravel's logs say which field is wrong and why. A 5xx is a bug.
"""

from typing import Any

from django.core.exceptions import RequestDataTooBig
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class DomainError(Exception):
    """A request that is well-formed but cannot be applied (e.g. the booking belongs to another car)."""

    status_code = status.HTTP_400_BAD_REQUEST
    code = "invalid"

    def __init__(
        self, detail: str, *, field: str | None = None, code: str | None = None, status_code: int | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        if code:
            self.code = code
        if status_code:
            self.status_code = status_code


def _flatten(detail: Any) -> Any:
    if isinstance(detail, dict):
        return {key: _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_flatten(item) for item in detail]
    return str(detail)


def first_error(fields: Any, path: tuple[str, ...] = ()) -> tuple[str, str]:
    """The dotted path and message of the first error, e.g. `bookings.1.current_battery_level`."""
    if isinstance(fields, dict):
        for key, value in fields.items():
            return first_error(value, (*path, str(key)))
    if isinstance(fields, list) and fields:
        if all(isinstance(item, str) for item in fields):
            return ".".join(path) or "body", fields[0]
        for index, item in enumerate(fields):
            if item:
                return first_error(item, (*path, str(index)))
    return ".".join(path) or "body", str(fields)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, RequestDataTooBig):
        exc = exceptions.ParseError("Request body is larger than the 1 MB limit.")
    if isinstance(exc, DomainError):
        fields = {exc.field: [exc.detail]} if exc.field else {}
        return Response(
            {"status": "error", "error": exc.code, "detail": exc.detail, "fields": fields},
            status=exc.status_code,
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        if not isinstance(fields, dict):
            fields = {"non_field_errors": fields}
        where, message = first_error(fields)
        response.data = {
            "status": "error",
            "error": "validation_error",
            "detail": f"{where}: {message}",
            "fields": fields,
        }
    else:
        detail = response.data.get("detail", "") if isinstance(response.data, dict) else response.data
        code = getattr(detail, "code", None) or getattr(exc, "default_code", "error")
        # A ParseError may know where the body is wrong (common/api/parsers.py: UnstorableJSON).
        field = getattr(exc, "field", None)
        fields = {field: [str(detail)]} if field else {}
        response.data = {"status": "error", "error": str(code), "detail": str(detail), "fields": fields}
    return response
