"""The Monte Carlo steps of `core.ml_cascade`, written for speed, take exactly the choices of their plain forms.

The plain forms are the obvious ones (clip the grid index and the weight, index the quantile table in two
dimensions); the cascade's figures must not move by a bit when the faster forms serve instead.
"""

import numpy as np
import pytest

from core.ml_cascade import LEVEL_GRID, _draw, _grid, _grid_choice


def plain_grid_choice(grid: np.ndarray, levels: np.ndarray, pick: np.ndarray) -> np.ndarray | int:
    if len(grid) == 1:
        return 0
    k = np.clip(np.searchsorted(grid, levels), 1, len(grid) - 1)
    low, high = grid[k - 1], grid[k]
    weight = np.clip((levels - low) / (high - low), 0.0, 1.0)
    return np.where(pick < weight, k, k - 1)


@pytest.mark.parametrize("walk_level", [0.0, 5.0, 12.3, 50.0, 94.9, 100.0, float("nan")])
def test_the_grid_choice_equals_its_clipped_form_below_inside_and_beyond_the_grid(walk_level):
    rng = np.random.default_rng(7)
    grid = _grid(walk_level)
    # Samples below the grid, on its levels, between them and above it; picks in [0, 1) with both ends.
    levels = np.concatenate([rng.uniform(-5.0, 105.0, 2000), np.array(LEVEL_GRID), [0.0, 100.0, grid[0]]])
    pick = np.concatenate([rng.random(levels.size - 2), [0.0, np.nextafter(1.0, 0.0)]])

    assert np.array_equal(_grid_choice(grid, levels, pick), plain_grid_choice(grid, levels, pick))


def test_a_single_level_grid_always_takes_its_only_row():
    assert _grid_choice(np.array([50.0]), np.array([10.0, 90.0]), np.array([0.1, 0.9])) == 0


def test_the_flat_draw_is_the_two_dimensional_one():
    rng = np.random.default_rng(11)
    q = np.sort(rng.uniform(-30.0, 60.0, (300, 7)), axis=1)
    rows, j, wu = rng.integers(0, 300, 600), rng.integers(1, 7, 600), rng.random(600)

    drawn = _draw(q, rows, j, wu, j - 1, 1 - wu)

    assert np.array_equal(drawn, q[rows, j - 1] * (1 - wu) + q[rows, j] * wu)
