"""Filters of the staff pages: validated like any input, with defaults that make the page useful at once."""

from __future__ import annotations

from datetime import date, timedelta

from django import forms
from django.utils import timezone

from bookings.models import Vehicle
from dashboard.selectors.accuracy import AccuracyFilter

DEFAULT_ACCURACY_DAYS = 30
MAX_ACCURACY_DAYS = 366 * 2


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
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict:
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] >= data["until"]:
            raise forms.ValidationError("'since' must be before 'until'.")
        return data
