# One command runs the service on the demo feed (`make run`); one runs the tests (`make test`).
PYTHON ?= python3.11
VENV ?= .venv
PORT ?= 8000
BIN := $(VENV)/bin
export DEBUG ?= true
export PROMETHEUS_MULTIPROC_DIR ?= $(CURDIR)/.run/prometheus

.PHONY: run install services migrate test lint check bench clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install -r requirements.txt
	touch $@

install: $(VENV)/.installed

services: install
	$(BIN)/python manage.py check_services

migrate: services
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo

run: migrate
	rm -rf $(PROMETHEUS_MULTIPROC_DIR) && mkdir -p $(PROMETHEUS_MULTIPROC_DIR)
	@echo "Signal Service on http://127.0.0.1:$(PORT)  (admin: /admin/ admin/admin; API docs: /api/docs/;"
	@echo "  WebSocket: ws://127.0.0.1:$(PORT)/ws/v2/signals/; metrics: /metrics; output: signal_output_stream:NSE@NIFTY)"
	@echo "  a demo API token: $(BIN)/python manage.py issue_token demo --scope signals:write"
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/honcho start -p $(PORT)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	DJANGO_SETTINGS_MODULE=signal_project.settings_test $(BIN)/python manage.py makemigrations --check --dry-run

bench: install
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .run staticfiles
