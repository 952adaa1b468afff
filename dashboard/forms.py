"""Filters of the staff pages: validated like any input, with defaults that make the page useful at once."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from django import forms
from django.utils import timezone

from bookings.models import Vehicle
from dashboard.selectors.accuracy import AccuracyFilter
from dashboard.selectors.timeline import MAX_WINDOW_DAYS

DEFAULT_ACCURACY_DAYS = 30
MAX_ACCURACY_DAYS = 366 * 2
EARLIEST = date(2000, 1, 1)  # the API refuses timestamps before 2000 and after 2099
LATEST = date(2099, 12, 30)
DEFAULT_TIMELINE_DAYS = 21


class AccuracyFilterForm(forms.Form):
    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    car = forms.CharField(required=False, max_length=64, label="Car id")

    def clean_car(self) -> Vehicle | None:
        car = self.cleaned_data["car"].strip()
        if not car:
            return None
        vehicle = Vehicle.objects.filter(external_id=car).first()
        if vehicle is None:
            raise forms.ValidationError(f"No car with id {car!r}.")
        return vehicle

    def clean(self) -> dict:
        data = super().clean()
        end: date = data.get("end") or timezone.localdate()
        start: date = data.get("start") or end - timedelta(days=DEFAULT_ACCURACY_DAYS - 1)
        if not (EARLIEST <= start <= LATEST and EARLIEST <= end <= LATEST):
            raise forms.ValidationError(f"Choose dates between {EARLIEST} and {LATEST}.")
        if start > end:
            raise forms.ValidationError("The start date is after the end date.")
        if (end - start).days >= MAX_ACCURACY_DAYS:
            raise forms.ValidationError(f"Choose a range of at most {MAX_ACCURACY_DAYS} days.")
        data["start"], data["end"] = start, end
        return data

    def shown_values(self) -> dict:
        data = self.cleaned_data
        return {"start": data["start"], "end": data["end"], "car": data["car"].external_id if data.get("car") else ""}

    def accuracy_filter(self) -> AccuracyFilter:
        data = self.cleaned_data
        return AccuracyFilter(start=data["start"], end=data["end"], vehicle=data.get("car"))


class OperationsFilterForm(forms.Form):
    threshold = forms.FloatField(required=False, min_value=0, max_value=100, label="Threshold (%)")
    days = forms.IntegerField(required=False, min_value=1, max_value=30, label="Next days")


class TimelineFilterForm(forms.Form):
    """An inclusive range of days; one end alone means three weeks from or up to it."""

    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict:
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        for day in (since, until):
            if day is not None and not EARLIEST <= day <= LATEST:
                raise forms.ValidationError(f"Choose dates between {EARLIEST} and {LATEST}.")
        if since and until and since > until:
            raise forms.ValidationError("'since' must not be after 'until'.")
        if since and not until:
            data["until"] = since + timedelta(days=DEFAULT_TIMELINE_DAYS - 1)
        elif until and not since:
            data["since"] = until - timedelta(days=DEFAULT_TIMELINE_DAYS - 1)
        if (since or until) and (data["until"] - data["since"]).days >= MAX_WINDOW_DAYS:
            raise forms.ValidationError(f"Choose at most {MAX_WINDOW_DAYS} days.")
        return data

    def window(self) -> tuple[datetime | None, datetime | None]:
        """[since 00:00, the day after until 00:00) in the current time zone; (None, None) for the default."""
        since, until = self.cleaned_data.get("since"), self.cleaned_data.get("until")
        if since is None:
            return None, None
        tz = timezone.get_current_timezone()
        return (
            datetime.combine(since, time.min, tzinfo=tz),
            datetime.combine(until + timedelta(days=1), time.min, tzinfo=tz),
        )
