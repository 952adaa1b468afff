"""`manage.py train_model --synthetic`: train the bootstrap model on a simulated fleet (cold start)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from core.simulation.fleet import FleetConfig, simulate
from learning.champion import champion_incompatible, champion_model, champion_row
from learning.management.commands._progress import training_bar
from learning.prior import SYNTHETIC_SEED
from learning.training import model_compile, model_promote, model_train


class Command(BaseCommand):
    help = "Train a gap and trip model and register it; the first model becomes the champion."

    def add_arguments(self, parser):
        parser.add_argument("--synthetic", action="store_true", help="train on a simulated fleet (cold start)")
        parser.add_argument("--cars", type=int, default=400)
        parser.add_argument("--renters", type=int, default=1200)
        parser.add_argument("--days", type=int, default=120)
        parser.add_argument("--seed", type=int, default=SYNTHETIC_SEED)
        parser.add_argument("--if-missing", action="store_true", help="do nothing when a champion already serves")
        parser.add_argument(
            "--promote", action="store_true", help="make this model the champion even when one already serves"
        )

    def handle(self, *args, **opts):
        if not opts["synthetic"]:
            raise CommandError("Only --synthetic is supported here; `manage.py retrain` trains on recorded outcomes.")
        champion = champion_row()
        # A champion trained for other features or target (an older release's) cannot serve: it counts as none.
        replace = champion is not None and champion_incompatible(champion)
        if opts["if_missing"] and champion is not None and not replace:
            served = champion_model()
            if served is None:
                self.stderr.write(f"The champion {champion.version} cannot be loaded (see the log); not replacing it.")
                self.stdout.write("A champion is registered; nothing to do.")
            elif settings.MODEL_COMPILE and served.gap.compiled is None:
                # Compiled for another machine, or by a release with other compile options: compile it here before
                # the web processes load it, or they serve with LightGBM's slower predictor.
                bar, step = training_bar(f"compiling {champion.version}")
                with bar:
                    seconds = model_compile(champion, step)
                done = "could not be compiled (see the log)" if seconds is None else f"compiled in {seconds:.1f} s"
                self.stdout.write(f"A champion model already serves; its boosters {done}.")
            else:
                self.stdout.write("A champion model already serves; nothing to do.")
            return
        if replace:
            self.stdout.write(
                f"The champion {champion.version} was trained for other features or another target; "
                "training one that can serve."
            )
        config = FleetConfig(cars=opts["cars"], renters=opts["renters"], days=opts["days"], seed=opts["seed"])
        with tqdm(total=config.cars, desc=f"simulating {config.days} days", unit="car") as bar:
            sim = simulate(config, progress=bar.update)
        outcomes = sim.outcomes()
        bar, step = training_bar(f"training on {len(outcomes)} outcomes")
        with bar:
            row = model_train(
                outcomes=outcomes,
                readings=sim.readings(),
                source=f"synthetic:{config.seed}",
                progress=step,
                fleet=config,
            )
        self.stdout.write(f"Registered {row.version} in {row.training_seconds:.1f} s: {row.holdout_metrics}")
        if opts["promote"] or champion is None or replace:
            bar, step = training_bar("compiling the boosters for this machine")
            with bar:
                model_promote(version=row.version, progress=step)
            self.stdout.write(self.style.SUCCESS(f"{row.version} is now the champion."))
