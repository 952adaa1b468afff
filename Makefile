# The two commands: `make run` (set up everything, serve on 127.0.0.1:8000 with the worker) and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
# Where `make run` listens: loopback only by default (`make run HOST=0.0.0.0` for every interface).
HOST ?= 127.0.0.1

.PHONY: run test test-deps lint venv migrate apikey model bench bench-accuracy bench-worlds bench-training \
	bench-pages bench-fuzz clean

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
	HOST=$(HOST) bash scripts/serve.sh $(PORT)

# On SQLite the Postgres-only tests (row locks under concurrency) are deselected, and it says so;
# .ci/run runs the suite on both databases.
ON_POSTGRES := $(filter postgres%,$(DATABASE_URL))

# php-cli and chromium (the PHP signature and browser tests) are installed with apt-get when missing, as root or with
# password-less sudo; otherwise make test stops at once and prints the command to run.
test-deps:
	@bash scripts/test_deps.sh

test: test-deps venv
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports --no-cache
	@$(if $(ON_POSTGRES),echo "Testing on Postgres",echo "Testing on SQLite (Postgres-only tests deselected: set DATABASE_URL=postgres://... to run them)")
	$(PY) -m pytest $(if $(ON_POSTGRES),,-m "not postgres") $(PYTEST_ARGS)

# Serving speed as shipped (the bootstrap champion, gunicorn as scripts/serve.sh starts it, Postgres): sequential
# latency of every endpoint, wrk rates against GET /health, the event mix and a 10-minute soak (about 30 minutes;
# BENCH_ARGS=--quick for a smoke run). wrk comes from Debian. See bench/serving.py.
bench: venv
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(PY) -m bench.serving $(BENCH_ARGS)

# The default world alone at 40 cars and 60 days: the service (champion and pattern cascade) against persistence,
# the seed's EMA cascade and the oracle (about 15 minutes): see bench/accuracy.py and bench/worlds.py.
bench-accuracy: venv
	$(PY) -m bench.worlds --worlds default --cars 40 --renters 150 --days 60 $(BENCH_ARGS)

# The world-shift suite (about 22 minutes): one bootstrap model, replayed on worlds that each differ from the one it
# learnt, with issue 13's targets per world; BENCH_ARGS=--quick for a smoke run. See bench/worlds.py.
bench-worlds: venv
	$(PY) -m bench.worlds $(BENCH_ARGS)

# Training time at 100 k and 1 M outcomes, and cascade inference time: see bench/training.py.
bench-training: venv
	$(PY) -m bench.training $(BENCH_ARGS)

# The schemathesis test with 1000 examples per operation on SQLite and on Postgres, counting every 5xx and failed
# check (5 to 10 minutes per database on 2 cores): see bench/schemathesis_deep.py. BENCH_ARGS="--examples 200" for less.
bench-fuzz: venv
	$(PY) -m bench.schemathesis_deep $(BENCH_ARGS)

# Staff pages and admin changelists with a year of data for 500 cars, written by the service (seeds Postgres in
# about 5 minutes): see bench/pages.py.
bench-pages: venv
	$(PY) -m bench.pages $(BENCH_ARGS)

clean:
	rm -rf $(VENV) staticfiles .pytest_cache
