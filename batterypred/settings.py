"""Settings for batterypred, read from the environment (12-factor).

Every value has a safe development default so that `make run` works on a fresh clone; production
(DJANGO_DEBUG off) refuses to start without a real DJANGO_SECRET_KEY and the callback settings, and runs HTTPS-only.
See `.env.example` and the production checklist in docs/operations.md.
"""

import ipaddress
from datetime import timedelta
from pathlib import Path

import environ
from django.core.checks.security.base import (
    SECRET_KEY_INSECURE_PREFIX,
    SECRET_KEY_MIN_LENGTH,
    SECRET_KEY_MIN_UNIQUE_CHARACTERS,
)
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = BASE_DIR / "data"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

INSECURE_DEV_KEY = "django-insecure-development-only-key"
# The value `.env.example` shows for DJANGO_SECRET_KEY: a copied example must never become a production key.
EXAMPLE_SECRET_KEY = "change-me-to-a-random-string-of-at-least-50-characters"

DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default=INSECURE_DEV_KEY)
if not DEBUG:
    # The same rule as Django's own deploy check (security.W009), so a key that starts is a key it accepts.
    if SECRET_KEY in (INSECURE_DEV_KEY, EXAMPLE_SECRET_KEY):
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY must be set to your own random value when DJANGO_DEBUG is off: this is the "
            "development or .env.example placeholder."
        )
    if (
        len(SECRET_KEY) < SECRET_KEY_MIN_LENGTH
        or len(set(SECRET_KEY)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS
        or SECRET_KEY.startswith(SECRET_KEY_INSECURE_PREFIX)
    ):
        raise ImproperlyConfigured(
            f"DJANGO_SECRET_KEY must be set to a random value of at least {SECRET_KEY_MIN_LENGTH} characters "
            f"({SECRET_KEY_MIN_UNIQUE_CHARACTERS}+ different ones, not starting with {SECRET_KEY_INSECURE_PREFIX!r}) "
            "when DJANGO_DEBUG is off."
        )
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])

# --- HTTPS (docs/operations.md, "Production checklist") --------------------------------------------------
# With DEBUG off every request is sent to HTTPS, browsers are told to stay there (HSTS) and the session and CSRF
# cookies travel only over HTTPS; each can be switched off. Behind a TLS-terminating proxy set
# DJANGO_SECURE_PROXY_SSL_HEADER=1 (the proxy sets X-Forwarded-Proto: https and strips the client's own), or
# every request looks like plain HTTP and is redirected forever. The probes of load balancers and Prometheus
# come over plain HTTP, often on loopback, and are answered without a redirect.
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^health$", r"^api/v1/health$", r"^metrics$"]
if env.bool("DJANGO_SECURE_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=not DEBUG)
# The admin's forms behind a proxy on another origin (scheme://host[:port], comma-separated).
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_api_key",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "django_prometheus",
    "axes",
    "bookings",
    "predictions",
    "learning",
    "callbacks",
    "events",
    "dashboard",
]

MIDDLEWARE = [
    # First and next to last: request counts and latencies by view for /metrics (django-prometheus).
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
    # Last (django-axes): turns a locked-out admin login into its 429 before the request is counted.
    "axes.middleware.AxesMiddleware",
]

# Admin login throttling (django-axes): AxesStandaloneBackend refuses a locked-out login before the password is
# checked; ModelBackend then authenticates as before. Failures are kept in the database (every web process sees
# them) and listed in the admin (Axes > Access attempts), where deleting a row (or `manage.py axes_reset`) unlocks.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_ENABLED = env.bool("AXES_ENABLED", default=True)
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("AXES_COOLOFF_MINUTES", default=15.0))
# Comma-separated; `a+b` locks the combination. The default locks one username from one address, so an attacker
# cannot lock staff out from elsewhere. The address is REMOTE_ADDR: behind a proxy, the proxy's.
AXES_LOCKOUT_PARAMETERS = [
    group.split("+") if "+" in group else group
    for group in env.list("AXES_LOCKOUT_PARAMETERS", default=["username+ip_address"])
]
AXES_RESET_ON_SUCCESS = True  # a successful login forgets the failures before it

ROOT_URLCONF = "batterypred.urls"
WSGI_APPLICATION = "batterypred.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# DATABASE_URL unset: the embedded SQLite file under data/; set: e.g. postgres://postgres@127.0.0.1:5432/batterypred
DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'batterypred.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATA_DIR.mkdir(exist_ok=True)
    # Wait for the writer lock instead of failing at once when the web server and worker overlap.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    # Parameters bound by the server rather than quoted in Python: cheaper for the JSON-heavy
    # prediction inserts. Turn off behind a transaction-mode connection pooler.
    DATABASES["default"].setdefault("OPTIONS", {})["server_side_binding"] = env.bool(
        "DATABASE_SERVER_SIDE_BINDING", default=True
    )
    # With server-side binding, a query run this many times on a connection is prepared once and then only
    # executed: Postgres stops parsing and planning the hot path's queries. 0 turns it off; like server-side
    # binding it needs a session-mode pooler or none.
    prepare_threshold = env.int("DATABASE_PREPARE_THRESHOLD", default=5)
    if DATABASES["default"]["OPTIONS"]["server_side_binding"] and prepare_threshold > 0:
        DATABASES["default"]["OPTIONS"]["prepare_threshold"] = prepare_threshold
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # The same backend, whose health check looks at the socket before it sends `SELECT 1` (common/postgres/base.py).
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"]["ENGINE"] = "common.postgres"
    # Postgres' JIT compiles the staff pages' year-long aggregates for 15-90 ms each and gains nothing on
    # this workload (bench/pages.py). DATABASE_JIT=1 leaves the server's setting (and sends no startup
    # option, which PgBouncer refuses unless told to ignore it). Options from DATABASE_URL are kept.
    if not env.bool("DATABASE_JIT", default=False):
        options = DATABASES["default"]["OPTIONS"]
        options["options"] = f"{options.get('options', '')} -c jit=off".strip()

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://batterypred")}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# The admin's and the API docs' scripts and styles are served by the app itself (no CDN).
WHITENOISE_USE_FINDERS = True  # also serve straight from the apps when collectstatic has not run
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Bodies over 1 MB are refused with a 400 before they are parsed.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("MAX_REQUEST_BODY_BYTES", default=1_048_576)

# Events and predictions (docs/events.md). A reported observation time (a level's timestamp, a pick-up, a return)
# further ahead of the server's clock than this is refused with a 400: a reading from the future would be the
# car's newest level forever. A scheduled booking not picked up this long after its start is marked a no-show
# (0: never) and is no longer predicted; a late booking.started still applies.
MAX_CLOCK_SKEW_SECONDS = env.int("MAX_CLOCK_SKEW_SECONDS", default=300)
NO_SHOW_GRACE_HOURS = env.float("NO_SHOW_GRACE_HOURS", default=24.0)

# Readiness (docs/readiness.md): the level a booking needs at pick-up when the platform sends neither
# required_battery nor planned_distance_km, and the chance of having it below which a prediction is at risk.
READINESS_MIN_LEVEL = env.float("READINESS_MIN_LEVEL", default=25.0)
READINESS_RISK_THRESHOLD = env.float("READINESS_RISK_THRESHOLD", default=0.9)
if not 0.0 <= READINESS_MIN_LEVEL <= 100.0:
    raise ImproperlyConfigured("READINESS_MIN_LEVEL must be a battery level between 0 and 100.")
if not 0.0 < READINESS_RISK_THRESHOLD < 1.0:
    raise ImproperlyConfigured("READINESS_RISK_THRESHOLD must be a probability strictly between 0 and 1.")
# A booking that becomes at risk: how many free cars are priced for it (the fullest by last level) and how many
# of them its `booking.readiness_changed` callback suggests (callbacks/readiness.py).
READINESS_SWAP_POOL = env.int("READINESS_SWAP_POOL", default=8)
# A booking newly at risk is alerted only once its pick-up is this close (further ahead nobody can act yet).
READINESS_ALERT_HOURS = env.float("READINESS_ALERT_HOURS", default=48.0)
READINESS_SUGGESTIONS = env.int("READINESS_SUGGESTIONS", default=3)
if READINESS_SWAP_POOL < 0 or READINESS_SUGGESTIONS < 0 or READINESS_ALERT_HOURS < 0:
    raise ImproperlyConfigured("READINESS_SWAP_POOL, READINESS_SUGGESTIONS and READINESS_ALERT_HOURS must be >= 0.")


REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["common.api.permissions.APIKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["common.api.permissions.HasValidAPIKey"],
    "DEFAULT_THROTTLE_CLASSES": ["common.api.throttling.APIKeyRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api_key": env.str("API_RATE_LIMIT", default="6000/min")},
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["common.api.parsers.StrictJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "common.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "common.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "batterypred API",
    "DESCRIPTION": (
        "Battery level at booking start for electric car-sharing fleets: predictions with 95 % "
        "intervals, booking lifecycle webhooks, pattern learning and cascades. Every call needs "
        "an API key in the X-API-Key header."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The ApiKeyAuth security scheme comes from APIKeyAuthentication's extension (common/api/schema.py).
    "COMPONENT_SPLIT_REQUEST": True,
    # Several `status` fields have their own choice sets: name each, so the event responses' enum keeps its name.
    "ENUM_NAME_OVERRIDES": {
        "StatusEnum": ["success", "ignored"],
        "HealthStatusEnum": "batterypred.health_checks.OVERALL_STATUSES",
        "HealthCheckStatusEnum": "batterypred.health_checks.CHECK_STATUSES",
        "ModelServingEnum": ["model", "pattern_cascade"],
        "CandidateEnum": "predictions.shadow.CANDIDATES",
    },
}

# How long each process reuses the fleet-average rates and a verified API key (seconds; 0: never).
# A revoked key keeps working at most this long.
FLEET_PRIOR_CACHE_SECONDS = env.int("FLEET_PRIOR_CACHE_SECONDS", default=60)
API_KEY_CACHE_SECONDS = env.int("API_KEY_CACHE_SECONDS", default=30)
# How long each process reuses the interval margins and the fleet's clock that every prediction
# reads (seconds; 0: read them every time). A process sees its own updates at once.
CALIBRATION_CACHE_SECONDS = env.int("CALIBRATION_CACHE_SECONDS", default=5)
FLEET_CLOCK_CACHE_SECONDS = env.int("FLEET_CLOCK_CACHE_SECONDS", default=5)
# A repeated historical /predict of a booking whose car has not changed is answered with the prediction stored for
# it at most this many seconds ago (predictions/reuse.py; 0: always predict afresh).
PREDICTION_REUSE_SECONDS = env.int("PREDICTION_REUSE_SECONDS", default=60)

# Trained models (LightGBM boosters as text); the registry rows point here.
MODEL_DIR = Path(env.str("MODEL_DIR", default=str(DATA_DIR / "models")))
# How often a process checks the registry for a newly promoted champion (seconds).
MODEL_REFRESH_SECONDS = env.int("MODEL_REFRESH_SECONDS", default=30)
# Compile a model's boosters to machine code when it is promoted (core/compiled.py): a few
# seconds per model, then a long cascade prices about three times faster.
MODEL_COMPILE = env.bool("MODEL_COMPILE", default=True)

# Laravel callback settings (used by the callback outbox).
ML_CALLBACK_URL = env.str("ML_CALLBACK_URL", default="")
ML_WEBHOOK_SECRET = env.str("ML_WEBHOOK_SECRET", default="")
# When set, the booking event webhooks refuse (401) a body not signed with it (X-ML-Signature or Standard Webhooks).
ML_INBOUND_SECRET = env.str("ML_INBOUND_SECRET", default="")
ML_CALLBACK_TIMEOUT_SECONDS = env.float("ML_CALLBACK_TIMEOUT_SECONDS", default=10.0)
# Without a URL no callback is written, and without a secret Laravel cannot verify one: either way Laravel never
# hears of a re-prediction. In production that is refused at start unless the deployment says it wants no
# callbacks (ML_CALLBACKS_DISABLED=1); in any mode GET /api/v1/health reports it (the `callbacks` check).
ML_CALLBACKS_DISABLED = env.bool("ML_CALLBACKS_DISABLED", default=False)
if ML_CALLBACKS_DISABLED:
    ML_CALLBACK_URL = ""  # disabled means disabled: nothing is queued for a URL left in the environment
elif not DEBUG and not (ML_CALLBACK_URL and ML_WEBHOOK_SECRET):
    raise ImproperlyConfigured(
        "ML_CALLBACK_URL and ML_WEBHOOK_SECRET must both be set when DJANGO_DEBUG is off, or re-predictions never "
        "reach Laravel; set ML_CALLBACKS_DISABLED=1 if this deployment sends no callbacks."
    )

# django-q2: the ORM broker by default (the task queue is a table), Redis when Q_REDIS_URL is set.
# `timeout` (a task is killed after it) must stay below `retry` (an unacknowledged task is handed out
# again after it), or a slow task would run twice at once; `max_attempts` bounds those hand-outs.
# Long retraining runs on its own cluster, started with Q_CLUSTER_NAME=training (scripts/serve.sh),
# so it never holds up callback deliveries: queue it with `queue_on_commit(..., cluster="training")`.
Q_REDIS_URL = env.str("Q_REDIS_URL", default="")
Q_CLUSTER = {
    "name": "batterypred",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": 60,
    "retry": 120,
    "max_attempts": 5,
    "catch_up": False,
    "ack_failures": True,
    "ALT_CLUSTERS": {
        "training": {
            "workers": 1,
            "timeout": 3600,
            "retry": 3900,
            "max_attempts": 2,
        },
    },
    # django-q2 picks the ORM broker whenever "orm" is present, so exactly one of the two is set.
    **({"redis": Q_REDIS_URL} if Q_REDIS_URL else {"orm": "default"}),
}

# GET /api/v1/health: when a check turns degraded (docs/operations.md explains each). The database being
# unreachable is the only unhealthy (503) state; everything here is degraded (200) and needs an operator.
HEALTH_DATABASE_LATENCY_WARN_MS = env.float("HEALTH_DATABASE_LATENCY_WARN_MS", default=500.0)
# The every-minute callbacks_dispatch_due schedule overdue (or not succeeding) for longer: the worker is down.
HEALTH_SCHEDULER_LAG_WARN_SECONDS = env.int("HEALTH_SCHEDULER_LAG_WARN_SECONDS", default=300)
HEALTH_TASK_QUEUE_BACKLOG_WARN = env.int("HEALTH_TASK_QUEUE_BACKLOG_WARN", default=1000)
HEALTH_OUTBOX_OLDEST_PENDING_WARN_SECONDS = env.int("HEALTH_OUTBOX_OLDEST_PENDING_WARN_SECONDS", default=900)
HEALTH_OUTBOX_PENDING_WARN = env.int("HEALTH_OUTBOX_PENDING_WARN", default=1000)
HEALTH_OUTBOX_FAILED_WINDOW_SECONDS = env.int("HEALTH_OUTBOX_FAILED_WINDOW_SECONDS", default=86400)
# GET /metrics: with METRICS_BEARER_TOKEN set it needs `Authorization: Bearer <token>` from anywhere; without,
# it answers every address while DEBUG is on, and with DEBUG off only REMOTE_ADDR in METRICS_ALLOWED_NETWORKS
# (behind a proxy REMOTE_ADDR is the proxy's). The service's own figures are read from the database at most once
# per METRICS_CACHE_SECONDS per process (0: every scrape).
METRICS_BEARER_TOKEN = env.str("METRICS_BEARER_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=["127.0.0.0/8", "::1/128"])
try:
    for _network in METRICS_ALLOWED_NETWORKS:
        ipaddress.ip_network(_network, strict=False)
except ValueError as exc:
    raise ImproperlyConfigured(f"METRICS_ALLOWED_NETWORKS: {exc}") from exc
METRICS_CACHE_SECONDS = env.int("METRICS_CACHE_SECONDS", default=15)

# Weekly drift check (docs/models.md): recent window, reference span, minimum segments, PSI thresholds.
DRIFT_WINDOW_DAYS = env.int("DRIFT_WINDOW_DAYS", default=7)
DRIFT_REFERENCE_DAYS = env.int("DRIFT_REFERENCE_DAYS", default=28)
DRIFT_MIN_ROWS = env.int("DRIFT_MIN_ROWS", default=200)
DRIFT_PSI_WARN = env.float("DRIFT_PSI_WARN", default=0.1)
DRIFT_PSI_DRIFT = env.float("DRIFT_PSI_DRIFT", default=0.25)

# Staff operations page: upcoming pick-ups predicted (or possibly, by the interval's lower end) under this level.
DASHBOARD_LOW_BATTERY_THRESHOLD = env.float("DASHBOARD_LOW_BATTERY_THRESHOLD", default=20.0)

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- Retention (docs/operations.md, "Retention") ---------------------------------------------------------
# How many days each kind of row is kept before the daily `retention_daily` task (or `manage.py prune_data`)
# removes it; 0 keeps it forever. Scored and current predictions, outcomes, readings, bookings and callbacks
# still owed (pending or failed) are never removed, whatever these say.
# An inbound event's body (up to 1 MB) is blanked after RETENTION_INBOUND_BODY_DAYS; the row, with its
# idempotency key and stored response, stays for RETENTION_INBOUND_EVENT_DAYS, and then goes only once its
# booking is completed or cancelled (a replay applied as new then changes nothing).
RETENTION_INBOUND_BODY_DAYS = env.int("RETENTION_INBOUND_BODY_DAYS", default=30)
RETENTION_INBOUND_EVENT_DAYS = env.int("RETENTION_INBOUND_EVENT_DAYS", default=180)
# Predictions that are no longer a booking's current one, once scored or cancelled (their lesson is in
# the interval calibration by then), and what-if predictions made without a booking id.
RETENTION_SUPERSEDED_PREDICTION_DAYS = env.int("RETENTION_SUPERSEDED_PREDICTION_DAYS", default=90)
# Delivered callbacks, with their attempt log.
RETENTION_DELIVERED_CALLBACK_DAYS = env.int("RETENTION_DELIVERED_CALLBACK_DAYS", default=30)
# Rows removed per transaction: short transactions, so a first run on a big table never holds long locks.
RETENTION_BATCH_SIZE = env.int("RETENTION_BATCH_SIZE", default=1000)
# One run of the daily task stops starting batches after this (it must finish within Q_CLUSTER's 60 s
# timeout); what is left is done by another run queued at once.
RETENTION_TASK_BUDGET_SECONDS = env.float("RETENTION_TASK_BUDGET_SECONDS", default=40.0)
for _name in (
    "RETENTION_INBOUND_BODY_DAYS",
    "RETENTION_INBOUND_EVENT_DAYS",
    "RETENTION_SUPERSEDED_PREDICTION_DAYS",
    "RETENTION_DELIVERED_CALLBACK_DAYS",
):
    if globals()[_name] < 0:
        raise ImproperlyConfigured(f"{_name} must be 0 (keep forever) or a number of days, not {globals()[_name]}")
if RETENTION_BATCH_SIZE < 1:
    raise ImproperlyConfigured(f"RETENTION_BATCH_SIZE must be at least 1, not {RETENTION_BATCH_SIZE}")
