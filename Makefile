# The two commands: `make run` (set up everything, serve on :8000 with the worker) and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000

.PHONY: run test lint venv migrate apikey model bench bench-accuracy bench-worlds bench-training bench-load bench-pages clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

migrate: venv
	$(PY) manage.py migrate --noinput

apikey: migrate
	@$(PY) manage.py create_api_key "local-$$(date +%Y%m%d-%H%M%S)" | tail -n 1 | sed 's/^/API key (send as X-API-Key): /'

# A fresh machine has no model: train the bootstrap one on a simulated fleet (about a minute), once.
model: migrate
	$(PY) manage.py train_model --synthetic --if-missing

run: model apikey
	$(PY) manage.py collectstatic --noinput -v0
	bash scripts/serve.sh $(PORT)

# On SQLite the Postgres-only tests (row locks under concurrency) are deselected, and it says so;
# .ci/run runs the suite on both databases.
ON_POSTGRES := $(filter postgres%,$(DATABASE_URL))

test: venv
	$(PY) -m ruff check .
	@$(if $(ON_POSTGRES),echo "Testing on Postgres",echo "Testing on SQLite (Postgres-only tests deselected: set DATABASE_URL=postgres://... to run them)")
	$(PY) -m pytest $(if $(ON_POSTGRES),,-m "not postgres") $(PYTEST_ARGS)

bench: venv
	$(PY) bench/endpoints.py

# Accuracy against persistence, the seed's EMA cascade and the oracle (about 10 minutes): see bench/accuracy.py.
bench-accuracy: venv
	$(PY) bench/accuracy.py $(BENCH_ARGS)

# The world-shift suite (about 22 minutes): one bootstrap model, replayed on worlds that each differ from the one it
# learnt, with issue 13's targets per world; BENCH_ARGS=--quick for a smoke run. See bench/worlds.py.
bench-worlds: venv
	$(PY) bench/worlds.py $(BENCH_ARGS)

# Training time at 100 k and 1 M outcomes, and cascade inference time: see bench/training.py.
bench-training: venv
	$(PY) bench/training.py $(BENCH_ARGS)

# Throughput, tail latency and a 10-minute soak under load (gunicorn, Postgres, wrk from Debian): see bench/load.py.
# BENCH_ARGS=--quick for a smoke run.
bench-load: venv
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(PY) bench/load.py $(BENCH_ARGS)

# Staff pages and admin changelists with a year of data for 500 cars (seeds Postgres in ~4 minutes): see bench/pages.py.
bench-pages: venv
	$(PY) bench/pages.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) staticfiles .pytest_cache
