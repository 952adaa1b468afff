"""`manage.py train_model --synthetic`: train the bootstrap model on a simulated fleet (cold start)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from learning.management.commands._progress import training_bar
from learning.simulation.fleet import FleetConfig, simulate
from learning.training import model_promote, model_train
from predictions.champion import champion_model
from predictions.registry_models import ModelStatus, ModelVersion

# The bootstrap fleet's seed is not the accuracy benchmark's default seed (7): no model is tuned on it.
SYNTHETIC_SEED = 1001


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
        # A champion this code cannot serve (trained with other features by an older release) counts as none.
        servable = champion_model() is not None
        if opts["if_missing"] and servable:
            self.stdout.write("A champion model already serves; nothing to do.")
            return
        if ModelVersion.objects.filter(status=ModelStatus.CHAMPION).exists() and not servable:
            self.stdout.write("The registered champion cannot be served by this code; training one that can.")
        config = FleetConfig(cars=opts["cars"], renters=opts["renters"], days=opts["days"], seed=opts["seed"])
        with tqdm(total=config.cars, desc=f"simulating {config.days} days", unit="car") as bar:
            sim = simulate(config, progress=bar.update)
        outcomes = sim.outcomes()
        bar, step = training_bar(f"training on {len(outcomes)} outcomes")
        with bar:
            row = model_train(
                outcomes=outcomes, readings=sim.readings(), source=f"synthetic:{config.seed}", progress=step
            )
        self.stdout.write(f"Registered {row.version} in {row.training_seconds:.1f} s: {row.holdout_metrics}")
        if opts["promote"] or not servable:
            bar, step = training_bar("compiling the boosters for this machine")
            with bar:
                model_promote(version=row.version, progress=step)
            self.stdout.write(self.style.SUCCESS(f"{row.version} is now the champion."))
