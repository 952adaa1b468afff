"""Staff pages. Thin: validate the filter form, call selectors, render; the two POSTs call one service each.

Every view is wrapped in `admin.site.admin_view` (see `dashboard/urls.py`): anonymous and non-staff
users are sent to the admin login, and the pages share the admin's chrome and CSRF protection.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from bookings.models import Vehicle
from callbacks.services import callback_redeliver
from dashboard.forms import AccuracyFilterForm, OperationsFilterForm, TimelineFilterForm
from dashboard.selectors.accuracy import HORIZONS, PROMISED_COVERAGE, accuracy_report
from dashboard.selectors.deliveries import (
    STATUS_FILTERS,
    callbacks_recent,
    circuits,
    inbound_events_recent,
    outbox_summary,
)
from dashboard.selectors.models_page import HOLDOUT_COLUMNS, models_overview, shadow_rows
from dashboard.selectors.operations import (
    at_risk_upcoming,
    idle_drain_jumps,
    low_battery_threshold,
    low_battery_upcoming,
    readiness_risk_threshold,
)
from dashboard.selectors.timeline import car_timeline
from dashboard.services import model_retrain_request
from learning.drift import drift_settings
from predictions.shadow import CANDIDATES

DEFAULT_OPERATIONS_DAYS = 3


def _page(request: HttpRequest, template: str, title: str, **context) -> HttpResponse:
    return render(
        request,
        f"dashboard/{template}",
        {**admin.site.each_context(request), "title": title, "page": template.removesuffix(".html"), **context},
    )


def accuracy(request: HttpRequest) -> HttpResponse:
    form = AccuracyFilterForm(request.GET)  # every field is optional: no filter means the last 30 days
    report = None
    if form.is_valid():
        report = accuracy_report(form.accuracy_filter())
        form = AccuracyFilterForm(initial=form.shown_values())  # show the range actually used
    return _page(
        request,
        "accuracy.html",
        "Prediction accuracy",
        form=form,
        report=report,
        horizons=[label for label, _ in HORIZONS],
        promised=PROMISED_COVERAGE,
    )


def car_timeline_page(request: HttpRequest, vehicle_id: str) -> HttpResponse:
    if "\x00" in vehicle_id:  # Postgres cannot compare a NUL; no car id holds one
        raise Http404
    vehicle = get_object_or_404(Vehicle, external_id=vehicle_id)
    form = TimelineFilterForm(request.GET)
    since, until = form.window() if form.is_valid() else (None, None)
    timeline = car_timeline(vehicle=vehicle, since=since, until=until)
    return _page(request, "car_timeline.html", f"Timeline of car {vehicle.external_id}", form=form, timeline=timeline)


def models_page(request: HttpRequest) -> HttpResponse:
    return _page(
        request,
        "models.html",
        "Models",
        overview=models_overview(),
        shadow=shadow_rows(),
        candidates=CANDIDATES,
        holdout_columns=[title for _, title in HOLDOUT_COLUMNS],
        drift_thresholds=drift_settings(),
    )


@require_POST
def models_retrain(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm("learning.change_modelversion"):
        raise PermissionDenied
    model_retrain_request(requested_by=request.user.get_username())
    messages.success(
        request,
        "Retraining is queued on the training worker. A better model is promoted when it finishes; "
        "this page shows it then.",
    )
    return HttpResponseRedirect(reverse("dashboard:models"))


def deliveries(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "")
    if status not in STATUS_FILTERS:
        status = ""
    return _page(
        request,
        "deliveries.html",
        "Deliveries",
        summary=outbox_summary(),
        callbacks=callbacks_recent(status=status),
        status=status,
        statuses=STATUS_FILTERS[1:],
        circuits=circuits(),
        events=inbound_events_recent(),
    )


@require_POST
def deliveries_redeliver(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm("callbacks.redeliver_callbackoutbox"):
        raise PermissionDenied
    ids = request.POST.getlist("outbox_id")
    try:
        reset = callback_redeliver(outbox_ids=ids) if ids else 0
    except ValidationError:  # a malformed id from a hand-made form is the user's mistake, not a 500
        messages.error(request, "Those callback ids are not valid.")
        return HttpResponseRedirect(reverse("dashboard:deliveries"))
    messages.success(request, f"{reset} callback(s) queued for redelivery.")
    return HttpResponseRedirect(reverse("dashboard:deliveries"))


def operations(request: HttpRequest) -> HttpResponse:
    form = OperationsFilterForm(request.GET)
    threshold, days = low_battery_threshold(), DEFAULT_OPERATIONS_DAYS
    if form.is_valid():
        threshold = form.cleaned_data.get("threshold") if form.cleaned_data.get("threshold") is not None else threshold
        days = form.cleaned_data.get("days") or days
    return _page(
        request,
        "operations.html",
        "Operations",
        form=form,
        threshold=threshold,
        days=days,
        low=low_battery_upcoming(threshold=threshold, days=days),
        at_risk=at_risk_upcoming(days=days),
        risk_percent=100 * readiness_risk_threshold(),
        jumps=idle_drain_jumps(),
    )
