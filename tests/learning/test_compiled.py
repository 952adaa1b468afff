"""Compiled boosters (lleaves): built on promotion, served with LightGBM's numbers, and never required."""

from __future__ import annotations

import logging
import multiprocessing
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from core import compiled, gbm
from core.compiled import compiled_dir
from learning.champion import artifact_path, champion_forget, champion_model
from learning.models import ModelStatus
from learning.training import model_promote, model_train, segment_frames
from tests.modelling import champion_serve, fleet_outcomes

ROUNDS = 5  # compiling takes time per tree: a handful is enough to compare numbers


@pytest.fixture
def model_dir(settings, tmp_path) -> Path:
    settings.MODEL_DIR = tmp_path / "models"
    return settings.MODEL_DIR


@pytest.fixture
def compiling(settings, model_dir) -> Path:
    settings.MODEL_COMPILE = True
    return compiled_dir(model_dir)


def _rows() -> dict[str, np.ndarray]:
    gaps, trips = segment_frames(list(fleet_outcomes())[:400])
    return {"gap": gbm.matrix(gaps, "gap"), "trip": gbm.matrix(trips, "trip")}


@pytest.mark.django_db
def test_promotion_compiles_the_boosters_and_serving_gives_lightgbm_numbers(compiling):
    row = champion_serve(rounds=ROUNDS)

    boosters = 2 * len(gbm.QUANTILES)
    assert len(list(compiling.glob(f"{row.artifact_sha256[:16]}-*.so"))) == boosters
    served = champion_model()
    assert len(served.gap.compiled) == len(served.trip.compiled) == len(gbm.QUANTILES)
    plain = gbm.GapTripModel.load(artifact_path(row), row.artifact_sha256)
    assert plain.gap.compiled is None
    for kind, rows in _rows().items():
        np.testing.assert_allclose(
            served.segment(kind).quantiles(rows), plain.segment(kind).quantiles(rows), rtol=0, atol=1e-9
        )
        # Called straight into the machine code: lleaves' own predict's numbers, to the bit.
        boosters = served.segment(kind).compiled
        own = np.column_stack([model.predict(rows, n_jobs=1) for model in boosters.models])
        assert np.array_equal(boosters.predict(rows), own)
        assert boosters.predict(rows[:1]).shape == (1, len(gbm.QUANTILES))
        with pytest.raises(ValueError, match="shape"):
            boosters.predict(rows[:, :-1])


@pytest.mark.django_db
def test_a_model_whose_compiled_boosters_are_missing_serves_with_lightgbm_and_says_so(compiling, caplog):
    row = champion_serve(rounds=ROUNDS)
    next(compiling.glob(f"{row.artifact_sha256[:16]}-*-trip-3.so")).unlink()
    champion_forget()

    with caplog.at_level(logging.WARNING, logger="learning.champion"):
        served = champion_model()

    assert served is not None and served.version == row.version
    assert served.gap.compiled is None and served.trip.compiled is None
    assert "compile_model" in caplog.text
    rows = _rows()["trip"]
    assert served.trip.quantiles(rows).shape == (len(rows), len(gbm.QUANTILES))


@pytest.mark.django_db
def test_compile_model_compiles_the_champion_and_serving_picks_it_up_without_a_restart(model_dir, settings):
    settings.MODEL_REFRESH_SECONDS = 0  # every call re-checks the registry, as each process does every 30 s
    row = champion_serve(rounds=ROUNDS)  # MODEL_COMPILE is off in tests unless a test turns it on
    served = champion_model()
    assert served.gap.compiled is None

    out = StringIO()
    call_command("compile_model", stdout=out, stderr=StringIO())

    assert f"{row.version} compiled" in out.getvalue()
    assert champion_model() is served  # the same loaded model, now with its compiled boosters
    assert len(served.gap.compiled) == len(served.trip.compiled) == len(gbm.QUANTILES)
    with pytest.raises(CommandError, match="No model 'nope'"):
        call_command("compile_model", model_version="nope", stderr=StringIO())


@pytest.mark.django_db
def test_a_compile_that_fails_is_logged_and_the_model_is_promoted_anyway(compiling, caplog):
    compiling.parent.mkdir(parents=True)
    compiling.write_text("a file where the compiled directory should be")
    row = model_train(outcomes=list(fleet_outcomes()), source="test", rounds=ROUNDS)

    with caplog.at_level(logging.ERROR, logger="learning.training"):
        promoted = model_promote(version=row.version)

    assert promoted.status == ModelStatus.CHAMPION
    assert f"could not compile {row.version}" in caplog.text
    assert champion_model().version == row.version and champion_model().gap.compiled is None


@pytest.mark.django_db
def test_a_queue_worker_compiles_the_boosters_itself_one_after_the_other(compiling, monkeypatch):
    """django-q's workers are daemonic processes, which may not start the compiling processes."""
    monkeypatch.setattr(multiprocessing.current_process(), "daemon", True)
    spawned = []
    monkeypatch.setattr(compiled, "ProcessPoolExecutor", lambda *a, **k: spawned.append(a) or None)

    row = champion_serve(rounds=ROUNDS)

    assert spawned == []
    assert len(list(compiling.glob(f"{row.artifact_sha256[:16]}-*.so"))) == 2 * len(gbm.QUANTILES)
    assert not list(compiling.glob("*.partial"))
    served = champion_model()
    plain = gbm.GapTripModel.load(artifact_path(row), row.artifact_sha256)
    for kind, rows in _rows().items():
        np.testing.assert_allclose(
            served.segment(kind).quantiles(rows), plain.segment(kind).quantiles(rows), rtol=0, atol=1e-9
        )


@pytest.mark.django_db
def test_make_run_compiles_a_champion_whose_compiled_boosters_are_missing(compiling):
    """Another machine's, or a release's with other compile options: `train_model --if-missing` (make run, the
    Dockerfile) compiles them before the web processes load the champion."""
    row = champion_serve(rounds=ROUNDS)
    for so in compiling.glob(f"{row.artifact_sha256[:16]}-*.so"):
        so.unlink()
    champion_forget()
    assert champion_model().gap.compiled is None

    out = StringIO()
    call_command("train_model", synthetic=True, if_missing=True, stdout=out, stderr=StringIO())

    assert "its boosters compiled in" in out.getvalue()
    assert len(list(compiling.glob(f"{row.artifact_sha256[:16]}-*.so"))) == 2 * len(gbm.QUANTILES)
    champion_forget()
    assert champion_model().version == row.version and len(champion_model().gap.compiled) == len(gbm.QUANTILES)


@pytest.mark.django_db
def test_a_compile_failing_in_its_process_leaves_nothing_half_made_and_the_model_serves(compiling, monkeypatch, caplog):
    """The compiling processes take the options of the process that asks (here ones lleaves refuses)."""
    monkeypatch.setattr(compiled, "COMPILE_OPTIONS", {"finline": False, "fblocksize": 0})

    with caplog.at_level(logging.ERROR, logger="learning.training"):
        row = champion_serve(rounds=ROUNDS)

    assert "could not compile" in caplog.text
    assert not list(compiling.glob("*.partial")) and not list(compiling.glob("*.so"))
    assert champion_model().version == row.version and champion_model().gap.compiled is None
