# The two commands: `make run` (set up everything, serve on :8000 with the worker) and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000

.PHONY: run test lint venv migrate apikey bench clean

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

run: apikey
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

clean:
	rm -rf $(VENV) staticfiles .pytest_cache
