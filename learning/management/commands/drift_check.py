"""`manage.py drift_check`: run the drift check of the champion's inputs now and print it, feature by feature."""

from __future__ import annotations

from datetime import datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime

from learning.champion import champion_row
from learning.drift import drift_table, drift_unavailable_reason, model_drift_check
from learning.models import DriftStatus


def _aware(value: str) -> datetime:
    at = parse_datetime(value)
    if at is None or at.tzinfo is None:
        raise CommandError(f"--at {value!r}: give an ISO 8601 time with its offset, e.g. 2026-03-01T00:00:00+00:00")
    return at


class Command(BaseCommand):
    help = "Compare the champion's inputs over the last week with its training window (PSI per feature); store it."

    def add_arguments(self, parser):
        parser.add_argument(
            "--at", type=_aware, default=None, help="end of the window checked, ISO 8601 with offset (default: now)"
        )

    def handle(self, *args, **opts):
        check = model_drift_check(now=opts["at"])
        if check is None:
            raise CommandError(f"No drift check: {drift_unavailable_reason(champion_row())}.")
        rows = check.rows
        self.stdout.write(
            f"Drift of {check.model_version.version}'s inputs from {check.window_start:%Y-%m-%d %H:%M} "
            f"to {check.window_end:%Y-%m-%d %H:%M} ({check.outcomes} outcomes, {rows.get('gap', 0)} gaps, "
            f"{rows.get('trip', 0)} trips)"
        )
        if check.status == DriftStatus.INSUFFICIENT_DATA:
            least = check.thresholds.get("min_rows")
            self.stdout.write(self.style.WARNING(f"insufficient data: fewer than {least} gaps or trips to judge"))
            return
        self.stdout.write(f"{'kind':5} {'feature':20} {'PSI':>8}  status")
        for row in drift_table(check):
            note = "" if row["scored"] else "  (not scored)"
            self.stdout.write(f"{row['kind']:5} {row['feature']:20} {row['psi']:>8.4f}  {row['status']}{note}")
        verdict = f"{check.status}: worst {check.worst_feature} PSI {check.max_psi:.4f}"
        style = {DriftStatus.OK: self.style.SUCCESS, DriftStatus.WARN: self.style.WARNING}.get(
            check.status, self.style.ERROR
        )
        self.stdout.write(style(verdict))
