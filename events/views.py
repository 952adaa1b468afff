"""The five booking webhooks, one viewset: validate, apply once through the workflow, answer with the stored body."""

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.viewsets import ViewSet

from bookings.models import IDEMPOTENCY_KEY_MAX_CHARS, EventType
from common.api.errors import DomainError
from common.api.schema import ERROR_RESPONSE_409, ERROR_RESPONSE_422
from common.api.signatures import SIGNATURE_HEADER, SignatureError, verify_inbound
from events import serializers as s
from events.services import HeaderKey, event_ingest

IDEMPOTENCY_HEADERS = [
    OpenApiParameter(
        "webhook-id",
        str,
        OpenApiParameter.HEADER,
        required=False,
        description=(
            "Standard Webhooks message id; a replay with the same id is applied once and answered from the store. "
            "The same id with another body is refused (422 idempotency_key_reused). At most 160 characters."
        ),
    ),
    OpenApiParameter(
        "Idempotency-Key",
        str,
        OpenApiParameter.HEADER,
        required=False,
        description=(
            "Alternative idempotency key, with the same rules as webhook-id. Without either, an identical body is "
            "a replay only while it is still the car's newest event (docs/events.md)."
        ),
    ),
]


SIGNATURE_HEADERS = [
    OpenApiParameter(
        SIGNATURE_HEADER,
        str,
        OpenApiParameter.HEADER,
        required=False,
        description=(
            "Lowercase hex HMAC-SHA256 of the raw body with ML_INBOUND_SECRET. Required (or the Standard Webhooks "
            "`webhook-timestamp` and `webhook-signature` headers) when ML_INBOUND_SECRET is set."
        ),
    ),
    OpenApiParameter(
        "webhook-timestamp",
        str,
        OpenApiParameter.HEADER,
        required=False,
        description="Standard Webhooks: Unix seconds when the event was signed; refused if more than 5 minutes off.",
    ),
    OpenApiParameter(
        "webhook-signature",
        str,
        OpenApiParameter.HEADER,
        required=False,
        description='Standard Webhooks: `v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">`.',
    ),
]


def _header_key(request: Request) -> HeaderKey | None:
    """The platform's idempotency key (webhook-id, else Idempotency-Key); refused when too long to store whole."""
    for header in ("webhook-id", "Idempotency-Key"):
        value = (request.headers.get(header) or "").strip()
        if not value:
            continue
        if not all(" " <= ch <= "~" for ch in value):
            raise DomainError(f"{header} must be printable ASCII.", field=header, code="invalid_idempotency_key")
        if len(value) > IDEMPOTENCY_KEY_MAX_CHARS:
            raise DomainError(
                f"{header} must be at most {IDEMPOTENCY_KEY_MAX_CHARS} characters (it is never shortened, "
                "so that two keys cannot collide).",
                field=header,
                code="invalid_idempotency_key",
            )
        return HeaderKey(value=value, header=header)
    return None


def _event_action(event_type: str, request_cls, response_cls, summary: str):
    """One webhook as a viewset action: its path (`events/booking-<name>`), URL name, schema and event type.

    The event type and request serializer become attributes of the view handling the action (DRF sets an
    action's extra kwargs on the view), which is how `ingest` and the schema's 401 text know the event.
    """
    name = event_type.replace("booking.", "booking-")

    def handle(self, request: Request) -> Response:
        return self.ingest(request)

    handle.__name__ = event_type.replace(".", "_")
    routed = action(
        detail=False,
        methods=["post"],
        url_path=f"events/{name}",
        url_name=name,
        event_type=event_type,
        request_serializer=request_cls,
    )(handle)
    return extend_schema(
        request=request_cls,
        responses={200: response_cls, 409: ERROR_RESPONSE_409, 422: ERROR_RESPONSE_422},
        parameters=IDEMPOTENCY_HEADERS + SIGNATURE_HEADERS,
        summary=summary,
        tags=["events"],
        operation_id=event_type.replace(".", "_"),
    )(routed)


# No docstrings on the viewset or its actions: drf-spectacular would publish them as operation descriptions.
class BookingEventViewSet(ViewSet):
    event_type: str = ""
    request_serializer: type[serializers.Serializer] | None = None

    def initial(self, request: Request, *args, **kwargs) -> None:
        """After the API key and rate limit pass, check the body's signature when ML_INBOUND_SECRET is set.

        Runs before anything reads `request.data`, so `request.body` is still the exact bytes that were signed
        (DRF then parses from that buffer). Refused requests raise before the service runs: nothing is stored.
        """
        super().initial(request, *args, **kwargs)
        secret = settings.ML_INBOUND_SECRET
        if not secret:
            return
        try:
            verify_inbound(secret, request.headers, request.body)
        except SignatureError as error:
            raise DomainError(
                str(error), field=error.header, code="invalid_signature", status_code=status.HTTP_401_UNAUTHORIZED
            ) from None

    def ingest(self, request: Request) -> Response:
        header_key = _header_key(request)
        serializer = self.request_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ingested = event_ingest(
            event_type=self.event_type,
            data=serializer.validated_data,
            body=request.data,
            header_key=header_key,
        )
        headers = {"Idempotent-Replayed": "true"} if ingested.replayed else {}
        return Response(ingested.event.response, headers=headers)

    booking_created = _event_action(
        EventType.CREATED,
        s.BookingCreatedSerializer,
        s.BookingCreatedResponseSerializer,
        "A booking was created: predict it and re-predict the car's later bookings.",
    )
    booking_started = _event_action(
        EventType.STARTED,
        s.BookingStartedSerializer,
        s.BookingStartedResponseSerializer,
        "The renter picked the car up: score the prediction, learn, cascade.",
    )
    booking_ended = _event_action(
        EventType.ENDED,
        s.BookingEndedSerializer,
        s.BookingEndedResponseSerializer,
        "The car was returned: record the outcome, update patterns, cascade.",
    )
    booking_modified = _event_action(
        EventType.MODIFIED,
        s.BookingModifiedSerializer,
        s.BookingModifiedResponseSerializer,
        "A booking's times changed: re-predict it and the later bookings.",
    )
    booking_cancelled = _event_action(
        EventType.CANCELLED,
        s.BookingCancelledSerializer,
        s.BookingCancelledResponseSerializer,
        "A booking was cancelled: re-predict the later bookings.",
    )
