#!/usr/bin/env bash
# `make deploy-check`: deploy/, the alert rules, compose and the Dockerfile checked without a cluster.
#   1. deploy/generated/ is what `make deploy-render` renders from deploy/routes.env and the alert rules;
#   2. `kubectl kustomize deploy/` is valid against the Kubernetes and the KEDA/prometheus-operator CRD schemas
#      and within the service's policy (manage.py check_deploy);
#   3. the alert rules pass `promtool check rules` and their unit tests (`promtool test rules`);
#   4. docker-compose.yml passes `docker compose config` (or docker-compose's);
#   5. the Dockerfile builds, where a Docker engine runs.
# Installs what it misses from Debian's packages (kubectl's kustomize, promtool, docker-compose) when run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mkdir -p .run

updated=
need() {  # need COMMAND DEBIAN-PACKAGE: install the package if the command is missing and we may
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing $2 (for $1)"
    [ -n "$updated" ] || { apt-get update -qq >/dev/null && updated=1; } || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null || true
  fi
  command -v "$1" >/dev/null 2>&1
}

set -a; . deploy/routes.env; set +a
"$PY" manage.py render_deploy --check

if command -v kustomize >/dev/null 2>&1 && ! command -v kubectl >/dev/null 2>&1; then
  kustomize build deploy/ > .run/deploy.yaml
else
  need kubectl kubernetes-client || { echo "deploy-check: no kubectl or kustomize" >&2; exit 1; }
  kubectl kustomize deploy/ > .run/deploy.yaml
fi
"$PY" manage.py check_deploy .run/deploy.yaml

need promtool prometheus || { echo "deploy-check: no promtool (Debian package prometheus)" >&2; exit 1; }
promtool check rules deploy/monitoring/alerts.rules.yaml
(cd deploy/monitoring && promtool test rules alerts.test.yaml)

# (each check on a line of its own: set -e does not stop at a failure inside an && list)
if docker compose version >/dev/null 2>&1; then
  docker compose config -q
  echo "docker-compose.yml: valid (docker compose config)"
elif need docker-compose docker-compose; then
  docker-compose config -q
  echo "docker-compose.yml: valid (docker-compose config)"
else
  echo "docker-compose.yml: not checked (no docker compose CLI)"
fi

if docker info >/dev/null 2>&1; then
  docker build -q -t signal-service:deploy-check .
  echo "Dockerfile: built signal-service:deploy-check"
else
  echo "Dockerfile: not built (no Docker engine runs here)"
fi
