"""Boosters compiled to machine code (lleaves), so a long cascade is priced in a few milliseconds.

LightGBM's predictor walks every tree node by node in a generic loop; lleaves compiles each
booster's trees to native code through LLVM and gives the same numbers (to about 1e-12) about
three times faster per row. Compiling takes a second or two per booster, so it happens once per
model, before it is promoted (`learning.training.model_promote`, or `manage.py compile_model`),
never in a request. The shared objects are kept in `MODEL_DIR/compiled/`, named by the
artifact's checksum and by this machine's CPU (code built for one CPU may not run on another).

A model whose compiled boosters are missing or cannot be loaded serves with LightGBM's own
predictor: slower, never wrong.

The compiled files are as trusted as the artifact beside them: whoever can write `MODEL_DIR`
can already replace the model.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from ctypes import POINTER, c_double
from functools import cache
from importlib.metadata import version
from pathlib import Path

import numpy as np

from core.gbm import GapTripModel, SegmentModels

logger = logging.getLogger(__name__)

# Inlining the trees' nodes makes compiling about three times slower (so the boosters compile in parallel, one
# process a core) for predictions about 30 % faster a row (docs/performance.md).
COMPILE_OPTIONS = {"finline": True, "fblocksize": 34}
COMPILE_PROCESSES = 4


@cache
def _machine() -> str:
    """What the compiled code depends on: the CPU it targets and the compiler's versions."""
    import llvmlite
    import llvmlite.binding as llvm

    features = llvm.get_host_cpu_features().flatten()
    versions = f"{version('lleaves')}|{llvmlite.__version__}"
    text = f"{llvm.get_host_cpu_name()}|{features}|{versions}|{COMPILE_OPTIONS}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _files(model: GapTripModel, sha256: str, directory: Path) -> Iterator[tuple[SegmentModels, int, Path, Path]]:
    stem = f"{sha256[:16]}-{_machine()}"
    for segment in (model.gap, model.trip):
        for index in range(len(segment.boosters)):
            base = directory / f"{stem}-{segment.kind}-{index}"
            yield segment, index, base.with_suffix(".txt"), base.with_suffix(".so")


_DOUBLES = POINTER(c_double)


class CompiledBoosters:
    """One segment's compiled quantile boosters, each called straight into its machine code.

    Why not lleaves' `Model.predict`: on every call it converts and checks its input and allocates its output,
    about 20 us, more than the trees cost for a short cascade's rows, and a prediction makes 14 such calls. Here
    the rows are checked and converted once, and each booster writes its own row of one output array through
    its entry function, exactly as `predict(data, n_jobs=1)` calls it (same function, same arguments).
    """

    def __init__(self, models: list):
        for model in models:
            if not model.use_fp64 or model._pandas_categorical:
                raise ValueError("compiled boosters must take float64 rows without pandas categories")
        self.models = models
        self.features = models[0].num_feature() if models else 0
        self._entries = [model._c_entry_func for model in models]  # (data, out, first row, end row)

    def __len__(self) -> int:
        return len(self.models)

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """(n, boosters): each booster's raw prediction of each row."""
        data = np.ascontiguousarray(rows, dtype=np.float64)
        if data.ndim != 2 or data.shape[1] != self.features:
            raise ValueError(f"rows must be of shape (n, {self.features}), are {data.shape}")
        n = len(data)
        out = np.zeros((len(self._entries), n))  # as lleaves' own predict starts from
        pointer = data.ctypes.data_as(_DOUBLES)
        for k, entry in enumerate(self._entries):
            entry(pointer, out[k].ctypes.data_as(_DOUBLES), 0, n)
        return out.T


def compiled_dir(model_dir: Path) -> Path:
    return Path(model_dir) / "compiled"


def compile_boosters(
    model: GapTripModel, sha256: str, directory: Path, progress: Callable[[str], None] | None = None
) -> float:
    """Compile every booster of `model` that is not compiled yet; returns the seconds it took.

    Each file is written under a temporary name and renamed into place, so a web process that
    looks at the same moment sees either nothing or a whole file.
    """
    started = time.perf_counter()
    directory.mkdir(parents=True, exist_ok=True)
    jobs = {}
    for segment, index, text_path, so_path in _files(model, sha256, directory):
        if so_path.exists() and text_path.exists():
            continue
        partial = f".{os.getpid()}.partial"
        text_tmp, so_tmp = Path(f"{text_path}{partial}"), Path(f"{so_path}{partial}")
        text_tmp.write_text(segment.boosters[index].model_to_string())
        jobs[(text_tmp, so_tmp)] = (f"{segment.kind} q{index}", text_path, so_path)
    try:
        for text_tmp, so_tmp in _compiled(list(jobs)):
            name, text_path, so_path = jobs[(text_tmp, so_tmp)]
            os.replace(text_tmp, text_path)
            os.replace(so_tmp, so_path)
            if progress:
                progress(name)
    finally:  # after a failure, nothing half-made is left behind
        for text_tmp, so_tmp in jobs:
            text_tmp.unlink(missing_ok=True)
            so_tmp.unlink(missing_ok=True)
    seconds = time.perf_counter() - started
    logger.info("compiled model %s in %.1f s", model.version, seconds)
    return seconds


def _compiled(jobs: list[tuple[Path, Path]]) -> Iterator[tuple[Path, Path]]:
    """Compile each (text, shared object) pair, yielding each as it is done; a failed compile raises.

    One process a core the process may run on, at most COMPILE_PROCESSES (each holds LightGBM and LLVM, and a
    container on a large host sees the host's cores), spawned rather than forked (the caller may be a web or
    queue worker with threads and database connections). A daemonic process (a django-q worker) may not have
    children: it compiles them one after the other itself.
    """
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = min(len(jobs), usable, COMPILE_PROCESSES)
    if workers <= 1 or multiprocessing.current_process().daemon:
        for text, so in jobs:
            _compile_one(str(text), str(so), COMPILE_OPTIONS)
            yield text, so
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        running = {pool.submit(_compile_one, str(text), str(so), COMPILE_OPTIONS): (text, so) for text, so in jobs}
        for done in as_completed(running):
            done.result()
            yield running[done]
    finally:  # on a failure, the compiles not started yet are not waited for
        pool.shutdown(wait=True, cancel_futures=True)


def _compile_one(text_path: str, so_path: str, options: dict) -> None:
    """Compile one booster's text file to a shared object (in a process of its own, with the caller's options)."""
    import lleaves

    lleaves.Model(model_file=text_path).compile(cache=so_path, **options)


def attach_compiled(model: GapTripModel, sha256: str, directory: Path) -> bool:
    """Serve `model` with its compiled boosters when all of them are there; False leaves LightGBM's.

    Any failure (lleaves or LLVM missing or broken, a damaged file) is logged and leaves the model
    on LightGBM's predictor: compiling is an optimisation, never a reason to stop serving.
    """
    try:
        import lleaves

        files = list(_files(model, sha256, directory))
        if not all(so.exists() and text.exists() for _, _, text, so in files):
            return False
        loaded: dict[str, list] = {"gap": [], "trip": []}
        for segment, _, text_path, so_path in files:
            predictor = lleaves.Model(model_file=str(text_path))
            predictor.compile(cache=str(so_path), **COMPILE_OPTIONS)  # loads the file: nothing is compiled
            loaded[segment.kind].append(predictor)
        boosters = {kind: CompiledBoosters(models) for kind, models in loaded.items()}
    except Exception:
        logger.exception("compiled boosters of %s cannot be loaded, using LightGBM's predictor", model.version)
        return False
    model.gap.compiled, model.trip.compiled = boosters["gap"], boosters["trip"]
    return True
