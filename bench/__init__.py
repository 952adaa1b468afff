"""The benchmarks, run as modules from the repository root: `.venv/bin/python -m bench.<name>` (see README.md)."""
