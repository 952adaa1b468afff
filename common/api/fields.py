"""Strict serializer fields shared by every endpoint: ids, battery levels, aware timestamps."""

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


@extend_schema_field({"oneOf": [{"type": "string"}, {"type": "integer"}], "example": "78"})
class ExternalIdField(serializers.Field):
    """Laravel's id as a string: `78` and `"78"` are the same car or booking."""

    default_error_messages = {
        "invalid": "Must be a string or an integer.",
        "blank": "Must not be empty.",
        "max_length": "Must be at most 64 characters.",
    }

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (str, int)):
            self.fail("invalid")
        value = str(data).strip()
        if not value:
            self.fail("blank")
        if len(value) > 64:
            self.fail("max_length")
        return value

    def to_representation(self, value):
        return str(value)


class StrictFloatField(serializers.FloatField):
    """A number (or numeric string); booleans are refused rather than read as 0 and 1."""

    def to_internal_value(self, data):
        if isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


class BatteryField(StrictFloatField):
    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", 0.0)
        kwargs.setdefault("max_value", 100.0)
        super().__init__(**kwargs)


# Timestamps outside this window are typos or garbage for a car-sharing fleet; refusing them keeps the date
# arithmetic downstream (intervals, EMA ages, year 1 or 9999 plus an offset) from overflowing into a 500.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


@extend_schema_field(OpenApiTypes.DATETIME)
class AwareDateTimeField(serializers.DateTimeField):
    """ISO 8601 with an explicit offset (`Z` or `+02:00`); naive times are ambiguous and refused."""

    default_error_messages = {
        "naive": "Must include a time zone offset, e.g. 2025-11-03T19:00:00Z.",
        "out_of_range": "Must be between 2000-01-01 and 2099-12-31 (UTC).",
    }

    def enforce_timezone(self, value):
        if timezone.is_naive(value):
            self.fail("naive")
        try:
            value = value.astimezone(UTC)
        except OverflowError:
            self.fail("out_of_range")
        if not EARLIEST <= value < LATEST:
            self.fail("out_of_range")
        return value


class ObservedAtField(AwareDateTimeField):
    """A moment something was observed (a level read, a pick-up, a return): never ahead of the server's clock.

    A level stamped in 2099 would be the car's newest reading forever, and every later prediction would start
    from it. Clocks drift, so up to MAX_CLOCK_SKEW_SECONDS ahead is accepted. Scheduled times (a booking's
    start) are not observations and use `AwareDateTimeField`.
    """

    default_error_messages = {
        "in_future": "Must not be ahead of the server's clock ({now}) by more than {skew} seconds: "
        "it reports something that has not happened yet.",
    }

    def enforce_timezone(self, value):
        value = super().enforce_timezone(value)
        now = timezone.now()
        skew = settings.MAX_CLOCK_SKEW_SECONDS
        if value > now + timedelta(seconds=skew):
            self.fail("in_future", now=iso(now), skew=skew)
        return value


def iso(value) -> str | None:
    """UTC ISO 8601 with a `Z`, the format the seed's examples use."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
