"""django-q2 tasks of the bookings app: thin, each calls one service (declared in `bookings/schedules.py`)."""

from django.utils import timezone

from bookings.selectors import fleet_clock
from bookings.services import bookings_mark_no_show_fleet


def no_shows_mark() -> int:
    """Hourly: mark the fleet's bookings not picked up within the grace as no-shows (cars with no events too)."""
    return bookings_mark_no_show_fleet(clock=fleet_clock(now=timezone.now()))
