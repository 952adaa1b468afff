"""`manage.py simulate_fleet`: a seeded car-sharing fleet's webhook stream and truth (see core/simulation)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from core.simulation.export import write
from core.simulation.fleet import FleetConfig, simulate


class Command(BaseCommand):
    help = "Simulate a fleet; write its calls (calls.jsonl) and truth (truth.json); optionally bootstrap a model."

    def add_arguments(self, parser):
        parser.add_argument("--cars", type=int, default=40)
        parser.add_argument("--renters", type=int, default=150)
        parser.add_argument("--days", type=int, default=60)
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--out", type=Path, help="directory for calls.jsonl and truth.json")
        parser.add_argument(
            "--bootstrap-model",
            action="store_true",
            help="also train the first model on this fleet's outcomes when no champion serves (cold start)",
        )

    def handle(self, *args, **opts):
        if min(opts["cars"], opts["renters"], opts["days"]) < 1:
            raise CommandError("--cars, --renters and --days must be at least 1")
        config = FleetConfig(cars=opts["cars"], renters=opts["renters"], days=opts["days"], seed=opts["seed"])
        sim = simulate(config)
        kinds = Counter(c.kind for c in sim.calls)
        self.stdout.write(
            f"{len(sim.bookings)} bookings, {len(sim.calls)} calls: "
            + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
        )
        if opts["out"]:
            for name, path in write(sim, opts["out"]).items():
                self.stdout.write(f"{name}: {path}")
        if opts["bootstrap_model"]:
            call_command(
                "train_model",
                synthetic=True,
                if_missing=True,
                cars=config.cars,
                renters=config.renters,
                days=config.days,
                seed=config.seed,
                stdout=self.stdout,
            )
