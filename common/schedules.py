"""Periodic django-q2 schedules, declared in code by each app and written idempotently after every `migrate`.

An app declares its schedules in `<app>/schedules.py`: `SCHEDULES` (name -> the Schedule fields to keep as
written there; `cluster` None: the default cluster runs it) and, optionally, `FIRST_RUN_AFTER` (name -> how long
after it is created a schedule first runs; the others are due at once). Its AppConfig connects
`schedules_on_post_migrate` with itself as sender. `schedules_declare` creates each schedule or brings its
settings up to date (by `name`) without moving its next run. A schedule removed from a list is not deleted:
delete it in the admin (Django Q > Scheduled tasks) if it should stop.
"""

from __future__ import annotations

import logging
from importlib import import_module
from types import ModuleType

from django.apps import AppConfig, apps
from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone
from django.utils.module_loading import module_has_submodule

logger = logging.getLogger(__name__)


def _declarations(app: AppConfig) -> ModuleType | None:
    return import_module(f"{app.name}.schedules") if module_has_submodule(app.module, "schedules") else None


def schedules_declare(*, app: AppConfig | None = None, using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """Create or update the schedules `app` declares (every installed app's when None); return their names.

    Safe to run any number of times (`update_or_create` by name; an existing schedule keeps its next run).
    """
    from django_q.models import Schedule  # django_q's models are ready only once apps are loaded

    names = []
    for config in [app] if app is not None else apps.get_app_configs():
        module = _declarations(config)
        if module is None or not hasattr(module, "SCHEDULES"):
            continue
        delays = getattr(module, "FIRST_RUN_AFTER", {})
        for name, fields in module.SCHEDULES.items():
            first = {"next_run": timezone.now() + delays[name]} if name in delays else {}
            Schedule.objects.using(using).update_or_create(name=name, defaults=fields, create_defaults=fields | first)
            names.append(name)
    return names


def schedules_on_post_migrate(sender: AppConfig, using: str = DEFAULT_DB_ALIAS, **kwargs) -> None:
    """post_migrate receiver: declare the sender app's schedules once django_q's table exists."""
    from django_q.models import Schedule

    if Schedule._meta.db_table not in connections[using].introspection.table_names():
        return
    names = schedules_declare(app=sender, using=using)
    logger.debug("schedules of %s declared: %s", sender.label, ", ".join(names))
