"""`manage.py retrain`: a challenger trained on recorded outcomes, promoted only if it beats the champion."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from learning.management.commands._progress import training_bar
from learning.selectors import outcomes_all, readings_mid_gap
from learning.training import HOLDOUT_SHARE, model_retrain


class Command(BaseCommand):
    help = "Retrain on recorded outcomes; compare with the champion on a time-based holdout; promote if better."

    def add_arguments(self, parser):
        parser.add_argument(
            "--holdout", type=float, default=HOLDOUT_SHARE, help="share of the newest outcomes held out"
        )

    def handle(self, *args, **opts):
        if not 0.05 <= opts["holdout"] <= 0.5:
            raise CommandError("--holdout must be between 0.05 and 0.5")
        outcomes = outcomes_all()
        bar, step = training_bar(f"retraining on {len(outcomes)} outcomes")
        try:
            with bar:
                report = model_retrain(
                    outcomes=outcomes, readings=readings_mid_gap(), holdout_share=opts["holdout"], progress=step
                )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        keys = ("rows", "mae", "bias", "within_10", "coverage_95")
        self.stdout.write(f"{'':12} " + " ".join(f"{k:>12}" for k in keys))
        for name, figures in (("challenger", report.challenger_metrics), ("champion", report.champion_metrics)):
            self.stdout.write(f"{name:12} " + " ".join(f"{figures.get(k, '-')!s:>12}" for k in keys))
        self.stdout.write(json.dumps({"challenger": report.challenger.version, "reason": report.reason}))
        verdict = f"promoted {report.challenger.version}" if report.promoted else "kept the champion"
        self.stdout.write(self.style.SUCCESS(f"{verdict}: {report.reason}"))
