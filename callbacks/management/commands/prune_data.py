"""`python manage.py prune_data [--dry-run]`: apply the retention windows now and say what went, per kind.

The same service the daily `retention_daily` task runs (`callbacks.retention`), without its time budget.
"""

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from callbacks.retention import KINDS, retention_run, retention_windows

LABELS = {
    "inbound_event_bodies": ("inbound event bodies", "blanked", "would blank"),
    "inbound_events": ("inbound events (final bookings)", "deleted", "would delete"),
    "superseded_predictions": (
        "superseded predictions (scored, cancelled or without booking)",
        "deleted",
        "would delete",
    ),
    "delivered_callbacks": ("delivered callbacks", "deleted", "would delete"),
    "callback_attempts": ("  with their attempts", "deleted", "would delete"),
}


class Command(BaseCommand):
    help = "Remove what has outlived its retention window (RETENTION_* settings); --dry-run only counts."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="count what would go; change nothing")
        parser.add_argument("--batch", type=int, default=None, help="rows per transaction (RETENTION_BATCH_SIZE)")

    def handle(self, *args, dry_run: bool, batch: int | None, **options):
        if batch is not None and batch < 1:
            raise CommandError("--batch must be at least 1")
        windows = retention_windows()
        report = retention_run(now=timezone.now(), dry_run=dry_run, batch=batch)
        for kind, rows in report.items():
            label, done, would = LABELS[kind]
            if kind not in KINDS:  # the attempts deleted with their callbacks
                if rows is not None:
                    self.stdout.write(f"{label}: {rows} {would if dry_run else done}")
            elif rows is None:
                self.stdout.write(f"{label}: kept forever ({KINDS[kind]}=0)")
            else:
                self.stdout.write(f"{label} older than {windows[kind]} days: {rows} {would if dry_run else done}")
        if dry_run:
            self.stdout.write("dry run: nothing was changed")
