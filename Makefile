# One command runs the service on the demo feed (`make run`); one runs the tests (`make test`).
PYTHON ?= python3.11
VENV ?= .venv
PORT ?= 8000
BIN := $(VENV)/bin
# The demo runs with DEBUG (a development JWT secret, admin static files); its processes share Prometheus samples
# through a directory. The tests set neither.
DEV_ENV := DEBUG=$${DEBUG:-true}
RUN_ENV := $(DEV_ENV) PROMETHEUS_MULTIPROC_DIR=$(CURDIR)/.run/prometheus

.PHONY: run install services migrate test lint check bench faults clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install -r requirements.txt
	touch $@

install: $(VENV)/.installed

services: install
	$(DEV_ENV) $(BIN)/python manage.py check_services

migrate: services
	$(DEV_ENV) $(BIN)/python manage.py migrate --noinput
	$(DEV_ENV) $(BIN)/python manage.py seed_demo
	$(DEV_ENV) $(BIN)/python manage.py collectstatic --noinput -v 0

run: migrate
	rm -rf .run/prometheus && mkdir -p .run/prometheus
	@echo "Signal Service on http://127.0.0.1:$(PORT)  (admin: /admin/ admin/admin; API docs: /api/docs/;"
	@echo "  WebSocket: ws://127.0.0.1:$(PORT)/ws/v2/signals/; metrics: /metrics; output: signal_output_stream:NSE@NIFTY)"
	@echo "  a demo API token: DEBUG=true $(BIN)/python manage.py issue_token demo --scope signals:write"
	$(RUN_ENV) PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/honcho start -p $(PORT)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	DJANGO_SETTINGS_MODULE=signal_project.settings_test $(BIN)/python manage.py makemigrations --check --dry-run
	DJANGO_SETTINGS_MODULE=signal_project.settings_test $(BIN)/python manage.py spectacular --validate \
		--fail-on-warn --file /dev/null

bench: install
	NUMBA_NUM_THREADS=1 $(BIN)/python -m bench.greeks
	$(BIN)/python -m bench.indicators
	$(BIN)/python -m bench.history_api --gc-freeze
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/greeks_pipeline.py

# The fault suite (docs/RELIABILITY.md): its own Redis and PostgreSQL on free ports, the Procfile's processes, a few
# minutes; exits non-zero on any loss or duplicate.
faults: install
	$(BIN)/python -m faults

clean:
	rm -rf $(VENV) .run staticfiles
