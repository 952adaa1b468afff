"""`manage.py retrain`: a challenger trained on recorded outcomes, promoted only if it beats the champion."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from learning.management.commands._progress import training_bar
from learning.prior import PRIOR_STRENGTH
from learning.selectors import outcomes_all, readings_mid_gap
from learning.training import FROM_CHAMPION, HOLDOUT_SHARE, model_retrain

# rows: predictions priced (each held-out booking at the return of the 1, 2 and 3 bookings before it)
KEYS = ("rows", "mae", "bias", "within_10", "coverage_95", "bookings", "mae_depth_1", "mae_depth_2", "mae_depth_3")


class Command(BaseCommand):
    help = (
        "Retrain on recorded outcomes (with the simulated fleet as a shrinking prior); price the champion and the "
        "challenger through the cascade on the newest bookings; promote if better."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--holdout", type=float, default=HOLDOUT_SHARE, help="share of the newest outcomes held out"
        )
        parser.add_argument(
            "--prior-strength",
            type=float,
            default=PRIOR_STRENGTH,
            help="how many fleet outcomes the simulated prior is worth while the fleet has none (0: no prior)",
        )
        parser.add_argument("--no-prior", action="store_true", help="train on the fleet's outcomes only")

    def handle(self, *args, **opts):
        if not 0.05 <= opts["holdout"] <= 0.5:
            raise CommandError("--holdout must be between 0.05 and 0.5")
        if opts["prior_strength"] < 0:
            raise CommandError("--prior-strength must be 0 or more")
        outcomes = outcomes_all()
        bar, step = training_bar(f"retraining on {len(outcomes)} outcomes")
        try:
            with bar:
                report = model_retrain(
                    outcomes=outcomes,
                    readings=readings_mid_gap(),
                    holdout_share=opts["holdout"],
                    progress=step,
                    prior=None if opts["no_prior"] else FROM_CHAMPION,
                    prior_strength=opts["prior_strength"],
                )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write("held-out bookings priced through the cascade, as served:")
        self.stdout.write(f"{'':12} " + " ".join(f"{k:>12}" for k in KEYS))
        for name, figures in (("challenger", report.challenger_metrics), ("champion", report.champion_metrics)):
            self.stdout.write(f"{name:12} " + " ".join(f"{figures.get(k, '-')!s:>12}" for k in KEYS))
        prior = report.challenger.hyperparameters.get("prior")
        self.stdout.write(
            json.dumps({"challenger": report.challenger.version, "prior": prior, "reason": report.reason})
        )
        verdict = f"promoted {report.challenger.version}" if report.promoted else "kept the champion"
        self.stdout.write(self.style.SUCCESS(f"{verdict}: {report.reason}"))
