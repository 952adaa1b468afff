"""`GET /metrics`: Prometheus text format, django-prometheus' request metrics plus the service's own figures.

The service's figures (predictions by method, events by type, scored error, the callback outbox, the serving
model) are read from the database at scrape time by `ServiceCollector`, not counted in process memory: gunicorn
runs several workers and a scrape reaches one of them, so only the database gives every scrape the same totals.
They are aggregate queries (one GROUP BY per table), never loops over rows, but an aggregate over the predictions
and events tables still reads every row: so each process renders them at most once per METRICS_CACHE_SECONDS
and answers scrapes within that window from the Django cache (a failed collection is not kept).

Who may scrape: with METRICS_BEARER_TOKEN set, whoever sends the token (from any address); without it, anyone
while DEBUG is on, and with DEBUG off only a REMOTE_ADDR inside METRICS_ALLOWED_NETWORKS (loopback by default),
like GitLab's monitoring IP allow-list. Behind a reverse proxy REMOTE_ADDR is the proxy's address, so allowing it
allows everyone the proxy forwards: use the token then, or keep /metrics off the proxy.

The collector lives in its own registry, exported beside django-prometheus' one: registering it in the global
`REGISTRY` would run its queries at registration (REGISTRY describes collectors by collecting them) and would be
dropped in prometheus_client's multiprocess mode, which exports a fresh registry. The module is imported once per
process (by the URLconf), so the collector is registered exactly once.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
from collections.abc import Iterable, Iterator

import prometheus_client
from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_safe
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from bookings.models import EventType, InboundEvent
from callbacks.models import CircuitState, EndpointCircuit
from callbacks.selectors import outbox_backlog
from learning.models import AccuracyMetric
from learning.selectors import model_champion
from predictions.models import Prediction, PredictionMethod
from predictions.services import MODEL_VERSION

logger = logging.getLogger(__name__)

PREFIX = "batterypred"
CACHE_KEY = "metrics:service"
PATTERN_KIND = "pattern-cascade"


def _predictions() -> Iterator[Metric]:
    counts = dict(Prediction.objects.order_by().values_list("prediction_method").annotate(n=Count("id")))
    family = CounterMetricFamily(
        f"{PREFIX}_predictions",
        "Predictions issued (every stored prediction), by prediction_method.",
        labels=["method"],
    )
    for method in sorted(set(PredictionMethod.values) | set(counts)):
        family.add_metric([method], counts.get(method, 0))
    yield family


def _events() -> Iterator[Metric]:
    rows = {
        row["event_type"]: row
        for row in InboundEvent.objects.order_by()
        .values("event_type")
        .annotate(n=Count("id"), duplicates=Sum("duplicates"), ignored=Count("id", filter=Q(applied=False)))
    }
    received = CounterMetricFamily(
        f"{PREFIX}_events", "Booking lifecycle webhooks recorded (once per idempotency key).", labels=["event_type"]
    )
    duplicates = CounterMetricFamily(
        f"{PREFIX}_event_duplicates",
        "Webhooks delivered again and answered from the store (not applied twice).",
        labels=["event_type"],
    )
    ignored = CounterMetricFamily(
        f"{PREFIX}_events_not_applied",
        "Webhooks recorded that could not move their booking (late or out-of-order events).",
        labels=["event_type"],
    )
    for event_type in sorted(set(EventType.values) | set(rows)):
        row = rows.get(event_type, {})
        received.add_metric([event_type], row.get("n", 0))
        duplicates.add_metric([event_type], row.get("duplicates") or 0)
        ignored.add_metric([event_type], row.get("ignored", 0))
    yield from (received, duplicates, ignored)


def _accuracy() -> Iterator[Metric]:
    """Errors of predictions scored against the battery at pick-up, from the daily `AccuracyMetric` sums."""
    rows = (
        AccuracyMetric.objects.order_by("model_version", "prediction_method")
        .values("model_version", "prediction_method")
        .annotate(
            n=Sum("count"),
            abs=Sum("sum_abs_error"),
            sq=Sum("sum_sq_error"),
            signed=Sum("sum_error"),
            w10=Sum("within_10"),
            inside=Sum("inside_interval"),
        )
    )
    labels = ["model_version", "method"]
    scored = CounterMetricFamily(
        f"{PREFIX}_prediction_scored", "Predictions scored against the actual battery at pick-up.", labels=labels
    )
    abs_error = SummaryMetricFamily(
        f"{PREFIX}_prediction_abs_error",
        "Absolute error of scored predictions, battery points (sum / count = MAE).",
        labels=labels,
    )
    sq_error = SummaryMetricFamily(
        f"{PREFIX}_prediction_squared_error",
        "Squared error of scored predictions, battery points squared (sqrt(sum / count) = RMSE).",
        labels=labels,
    )
    signed_error = SummaryMetricFamily(
        f"{PREFIX}_prediction_error",
        "Signed error (actual - predicted) of scored predictions, battery points (sum / count = bias).",
        labels=labels,
    )
    within_10 = CounterMetricFamily(
        f"{PREFIX}_prediction_within_10",
        "Scored predictions within 10 battery points of the actual level.",
        labels=labels,
    )
    inside = CounterMetricFamily(
        f"{PREFIX}_prediction_inside_interval",
        "Scored predictions whose 95 % interval contained the actual level (/ scored = coverage).",
        labels=labels,
    )
    for row in rows:
        key = [row["model_version"], row["prediction_method"]]
        n = row["n"] or 0
        scored.add_metric(key, n)
        abs_error.add_metric(key, count_value=n, sum_value=row["abs"] or 0.0)
        sq_error.add_metric(key, count_value=n, sum_value=row["sq"] or 0.0)
        signed_error.add_metric(key, count_value=n, sum_value=row["signed"] or 0.0)
        within_10.add_metric(key, row["w10"] or 0)
        inside.add_metric(key, row["inside"] or 0)
    yield from (scored, abs_error, sq_error, signed_error, within_10, inside)


def _outbox() -> Iterator[Metric]:
    backlog = outbox_backlog()
    callbacks = GaugeMetricFamily(
        f"{PREFIX}_outbox_callbacks", "Callbacks to Laravel in the outbox, by status.", labels=["status"]
    )
    for status in sorted(backlog.counts):
        callbacks.add_metric([status], backlog.counts[status])
    yield callbacks

    yield GaugeMetricFamily(
        f"{PREFIX}_outbox_oldest_pending_age_seconds",
        "Age of the oldest pending callback (0 when none is pending).",
        value=backlog.oldest_pending_age_seconds(timezone.now()) or 0.0,
    )

    states = dict(EndpointCircuit.objects.order_by().values_list("state").annotate(n=Count("id")))
    circuits = GaugeMetricFamily(
        f"{PREFIX}_callback_circuits", "Callback endpoint circuit breakers, by state.", labels=["state"]
    )
    for state in sorted(set(CircuitState.values) | set(states)):
        circuits.add_metric([state], states.get(state, 0))
    yield circuits


def _model() -> Iterator[Metric]:
    champion, serving = model_champion()
    info = GaugeMetricFamily(
        f"{PREFIX}_model_info",
        "The model answering predictions in this process (always 1): the champion, or the pattern cascade.",
        labels=["version", "kind"],
    )
    if serving:
        info.add_metric([champion.version, champion.kind], 1)
    else:
        info.add_metric([MODEL_VERSION, PATTERN_KIND], 1)
    yield info
    if champion is not None:
        loaded = GaugeMetricFamily(
            f"{PREFIX}_model_champion_loaded",
            "1 when the registered champion's artifact loaded and serves; 0 when it does not (the cascade answers).",
            labels=["version"],
        )
        loaded.add_metric([champion.version], 1 if serving else 0)
        yield loaded


SECTIONS = (_predictions, _events, _accuracy, _outbox, _model)


class ServiceCollector(Collector):
    """The service's own figures, read from the database when rendered (see `service_figures` for the cache).

    A failing section (the database down, a table missing before `migrate`) is logged and reported as
    `batterypred_metrics_collect_success 0` rather than failing the scrape: the process and request metrics
    are still worth having then.
    """

    def collect(self) -> Iterable[Metric]:
        success = 1
        for section in SECTIONS:
            try:
                families = list(section())
            except Exception:  # any failure of one section must not hide the others
                logger.exception("metrics: %s failed", section.__name__.lstrip("_"))
                success = 0
                continue
            yield from families
        yield GaugeMetricFamily(
            f"{PREFIX}_metrics_collect_success",
            "1 when every service figure above was read from the database on this scrape, 0 otherwise.",
            value=success,
        )


SERVICE_REGISTRY = CollectorRegistry(auto_describe=False)
SERVICE_REGISTRY.register(ServiceCollector())


def _base_registry() -> CollectorRegistry:
    """django-prometheus' metrics: this process's, or every worker's in multiprocess mode (PROMETHEUS_MULTIPROC_DIR)."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return registry
    return prometheus_client.REGISTRY


def service_figures() -> bytes:
    """The service's own figures in the text format, rendered at most once per METRICS_CACHE_SECONDS per cache.

    Prometheus scrapes every 15 to 60 s, often from two servers in a pair, and each scrape of every figure would
    otherwise aggregate whole tables. A rendering in which a section failed is not cached: the next scrape retries.
    """
    ttl = settings.METRICS_CACHE_SECONDS
    if ttl > 0:
        cached = cache.get(CACHE_KEY)
        if cached is not None:
            return cached
    families = list(SERVICE_REGISTRY.collect())
    body = prometheus_client.generate_latest(_Collected(families))
    success = families[-1].samples[0].value  # ServiceCollector reports batterypred_metrics_collect_success last
    if ttl > 0 and success == 1:
        cache.set(CACHE_KEY, body, ttl)
    return body


class _Collected:
    """Families already collected, in the shape `generate_latest` reads (a registry's `collect`)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def _client_allowed(request: HttpRequest) -> bool:
    """Whether REMOTE_ADDR lies in METRICS_ALLOWED_NETWORKS (an IPv4 address mapped into IPv6 counts as IPv4)."""
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in ipaddress.ip_network(net, strict=False) for net in settings.METRICS_ALLOWED_NETWORKS)


def _token_valid(request: HttpRequest, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The scrape target: the token when one is configured, else loopback and the allowed networks (DEBUG off)."""
    token = settings.METRICS_BEARER_TOKEN
    if token and not _token_valid(request, token):
        response = HttpResponse("A valid bearer token is required (METRICS_BEARER_TOKEN).\n", status=401)
        response["WWW-Authenticate"] = "Bearer"
        return response
    if not token and not settings.DEBUG and not _client_allowed(request):
        return HttpResponse(
            "Metrics are served to METRICS_ALLOWED_NETWORKS only, or with METRICS_BEARER_TOKEN.\n", status=403
        )
    body = prometheus_client.generate_latest(_base_registry()) + service_figures()
    return HttpResponse(body, content_type=prometheus_client.CONTENT_TYPE_LATEST)
