"""Writing a simulated fleet to disk: the call stream Laravel would send, and the truth beside it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from core.simulation.fleet import Simulation


def _iso(sim: Simulation, hours: float) -> str | None:
    return None if hours != hours else sim.when(hours).isoformat().replace("+00:00", "Z")


def write(sim: Simulation, out: Path) -> dict[str, Path]:
    """`calls.jsonl` (one {"at", "kind", "path", "body"} per line, in time order) and `truth.json`."""
    out.mkdir(parents=True, exist_ok=True)
    calls = out / "calls.jsonl"
    with calls.open("w") as fh:
        for c in sim.calls:
            at = c.at.isoformat().replace("+00:00", "Z")
            fh.write(json.dumps({"at": at, "kind": c.kind, "path": c.path, "body": c.body}) + "\n")
    truth = out / "truth.json"
    truth.write_text(
        json.dumps(
            {
                "config": {k: str(v) for k, v in dataclasses.asdict(sim.config).items()},
                "cars": [dataclasses.asdict(c) for c in sim.cars],
                "renters": [dataclasses.asdict(r) for r in sim.renters],
                "bookings": [
                    {
                        "booking_id": b.booking_id,
                        "vehicle_id": b.car.car_id,
                        "user_id": b.renter.user_id,
                        "created_at": _iso(sim, b.created),
                        "cancelled": b.cancelled,
                        "actual_start": _iso(sim, b.actual_start),
                        "battery_at_pickup": None if b.cancelled else b.battery_at_start,
                    }
                    for b in sim.bookings
                ],
            },
            indent=1,
        )
    )
    return {"calls": calls, "truth": truth}
