# One command runs the service on the demo feed (`make run`); one runs the tests (`make test`).
PYTHON ?= python3.11
VENV ?= .venv
PORT ?= 8000
BIN := $(VENV)/bin
# The demo runs with DEBUG (a development JWT secret, admin static files); its processes share Prometheus samples
# through a directory. The tests set neither.
DEV_ENV := DEBUG=$${DEBUG:-true}
RUN_ENV := $(DEV_ENV) PROMETHEUS_MULTIPROC_DIR=$(CURDIR)/.run/prometheus

.PHONY: run install services migrate test test-timescale test-cluster test-rabbitmq lint check bench fuzz faults clean deploy-render deploy-check

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
	$(MAKE) --no-print-directory test-cluster
	$(MAKE) --no-print-directory test-rabbitmq

# The storage, bars, history, rollup, Greeks-history, import and pipeline tests again, on TimescaleDB: a PostgreSQL
# cluster of its own with the extension preloaded, installed and started by TIMESCALEDB_INSTALL (the install script
# of a TimescaleDB build for this machine's PostgreSQL; it takes the port, is idempotent and prints DATABASE_URL).
TIMESCALEDB_INSTALL ?=
TIMESCALEDB_PORT ?= 5433
# test_timescale.py last: it refreshes the aggregates over recent days, which moves their watermark there (the
# other tests store 2024-2025 ticks directly, below it, where only a refresh would bring them into the aggregates).
TIMESCALE_TESTS := tests/test_ticks.py tests/test_bars_grid.py tests/test_bars_store.py tests/test_bar_rollup.py \
	tests/test_retention.py tests/test_history_api.py tests/test_import_history.py tests/test_greeks_history.py \
	tests/test_pipeline.py tests/test_indicators_pipeline.py tests/test_greeks_pipeline.py tests/test_timescale.py
test-timescale: install
	@test -n "$(TIMESCALEDB_INSTALL)" -a -x "$(TIMESCALEDB_INSTALL)" || \
		{ echo "TIMESCALEDB_INSTALL must name the TimescaleDB install script (got '$(TIMESCALEDB_INSTALL)')"; exit 1; }
	url=$$("$(TIMESCALEDB_INSTALL)" $(TIMESCALEDB_PORT) | tee /dev/stderr | sed -n 's/^DATABASE_URL=//p'); \
		test -n "$$url" || { echo "$(TIMESCALEDB_INSTALL) printed no DATABASE_URL"; exit 1; }; \
		echo "TimescaleDB run on $$url"; DATABASE_URL=$$url $(BIN)/python -m pytest $(TIMESCALE_TESTS) $(PYTEST_ARGS)

# The stream-to-sinks tests again with the data Redis a three-node Redis Cluster (faults/redis_cluster.py starts
# it from redis-server on free ports and stops it after); the Channels layer, the cache and the broker stay on the
# plain Redis.
CLUSTER_TESTS := tests/test_cluster.py tests/test_end_to_end.py tests/test_bridge.py tests/test_pipeline.py \
	tests/test_delivery.py tests/test_greeks_pipeline.py tests/test_many_bridges.py tests/test_turns.py \
	tests/test_stream_leases.py
test-cluster: install
	dir=$$(mktemp -d); trap '$(BIN)/python -m faults.redis_cluster stop '"$$dir" EXIT; \
		url=$$($(BIN)/python -m faults.redis_cluster start "$$dir" | sed -n 's/^REDIS_URL=//p'); \
		test -n "$$url" || { echo "no Redis Cluster started"; exit 1; }; echo "Redis Cluster at $$url"; \
		REDIS_CLUSTER=true TEST_REDIS_URL=$$url $(BIN)/python -m pytest $(CLUSTER_TESTS) $(PYTEST_ARGS)

# The turn-order tests again with RabbitMQ as the Celery broker (a batch sent to the back of its queue goes
# through the broker; the end-to-end RabbitMQ tests are in tests/test_rabbitmq.py).
RABBITMQ_URL ?= amqp://guest:guest@127.0.0.1:5672//
RABBITMQ_TESTS := tests/test_turns.py
test-rabbitmq: install
	TEST_CELERY_BROKER_URL=$(RABBITMQ_URL) $(BIN)/python -m pytest $(RABBITMQ_TESTS) $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	DJANGO_SETTINGS_MODULE=signal_project.settings_test $(BIN)/python manage.py makemigrations --check --dry-run
	DJANGO_SETTINGS_MODULE=signal_project.settings_test $(BIN)/python manage.py spectacular --validate \
		--fail-on-warn --file /dev/null

# schemathesis over the OpenAPI schema against the web app on a free port, its own database and demo data
# (tests/fuzz/run.py); FUZZ_SEED repeats a run, FUZZ_MAX_EXAMPLES bounds the cases per operation.
fuzz: install
	$(BIN)/python -m tests.fuzz.run

# deploy/generated/ from deploy/routes.env (a worker Deployment + KEDA ScaledObject per queue) and the alert rules.
deploy-render: install
	set -a && . deploy/routes.env && set +a && $(BIN)/python manage.py render_deploy

# deploy/ validated without a cluster: kustomize, schemas, policy, promtool, compose, the image (deploy/check.sh).
deploy-check: install
	PY=$(BIN)/python bash deploy/check.sh

bench: install
	NUMBA_NUM_THREADS=1 $(BIN)/python -m bench.greeks
	$(BIN)/python -m bench.indicators
	$(BIN)/python -m bench.history_api --gc-freeze
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/greeks_pipeline.py
	$(BIN)/python bench/backtest.py
	$(BIN)/python bench/scale.py
	$(BIN)/python -m bench.websocket

# The fault suite (docs/RELIABILITY.md): its own Redis and PostgreSQL on free ports, the Procfile's processes, a few
# minutes; exits non-zero on any loss or duplicate.
faults: install
	$(BIN)/python -m faults

clean:
	rm -rf $(VENV) .run staticfiles
