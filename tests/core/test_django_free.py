"""The core imports and runs without Django settings: a fresh interpreter with no DJANGO_SETTINGS_MODULE."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE_MODULES = [
    "physics",
    "ema",
    "features",
    "gbm",
    "compiled",
    "ml_cascade",
    "readiness",
    "simulation.fleet",
    "simulation.baselines",
]


def test_every_core_module_imports_without_settings_and_loads_no_django():
    script = (
        "import importlib, sys\n"
        f"for name in {CORE_MODULES!r}:\n"
        "    importlib.import_module('core.' + name)\n"
        "from core.physics import charge_level\n"
        "assert charge_level(50.0, 12.0, 2.0) > 50.0\n"
        "loaded = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'))\n"
        "print(loaded)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
