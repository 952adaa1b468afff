"""`manage.py compile_model`: compile a model's boosters for this machine (the champion by default).

Promotion compiles them already; this is for a model directory moved to another machine, or a
compile that failed (the model then serves with LightGBM's slower predictor, and the log says so).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from learning.management.commands._progress import training_bar
from learning.models import ModelStatus, ModelVersion
from learning.training import model_compile


class Command(BaseCommand):
    help = "Compile a registered model's boosters to machine code for this machine (default: the champion)."

    def add_arguments(self, parser):
        parser.add_argument("--model", dest="model_version", help="a registered model version")

    def handle(self, *args, **opts):
        rows = ModelVersion.objects.all()
        row = (
            rows.filter(version=opts["model_version"]).first()
            if opts["model_version"]
            else rows.filter(status=ModelStatus.CHAMPION).first()
        )
        if row is None:
            raise CommandError(f"No model {opts['model_version']!r}." if opts["model_version"] else "No champion.")
        bar, step = training_bar(f"compiling {row.version}")
        with bar:
            seconds = model_compile(row, step)
        if seconds is None:
            raise CommandError(f"Compiling {row.version} failed; see the log. It serves with LightGBM's predictor.")
        self.stdout.write(self.style.SUCCESS(f"{row.version} compiled in {seconds:.1f} s."))
