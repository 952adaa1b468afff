"""A progress bar for long commands (tqdm), fed by the services' `progress(label)` callbacks."""

from __future__ import annotations

from collections.abc import Callable

from tqdm import tqdm

from core.gbm import QUANTILES


def training_bar(description: str, *, disable: bool = False) -> tuple[tqdm, Callable[[str], None]]:
    """A bar over the boosters a training fits (one per quantile, for gaps and for trips)."""
    bar = tqdm(total=2 * len(QUANTILES), desc=description, unit="booster", disable=disable)

    def step(label: str) -> None:
        bar.set_postfix_str(label)
        bar.update(1)

    return bar, step
