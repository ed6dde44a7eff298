# Signal Service image: `docker build -t signal-service .`; every process runs from it (deploy/, docker-compose.yml).
#
# Stage 1 installs the pinned requirements into a virtualenv; stage 2 copies only that virtualenv and the code,
# runs as an unprivileged user (uid 10001, as the Kubernetes manifests require), and compiles the numba Greeks
# kernels at build time into NUMBA_CACHE_DIR, so no worker spends its first seconds (and its first ticks)
# compiling. numba keys its cache by CPU model: on another model a worker compiles once and writes the directory,
# which the app user owns.
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install -r /tmp/requirements.txt

FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PATH=/opt/venv/bin:$PATH NUMBA_CACHE_DIR=/app/.numba-cache
RUN groupadd --system --gid 10001 signal \
    && useradd --system --uid 10001 --gid signal --home-dir /app --no-create-home signal \
    && mkdir -p /app /var/run/signal-metrics \
    && chown signal:signal /app /var/run/signal-metrics
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=signal:signal . .
USER 10001:10001
RUN DEBUG=true python manage.py collectstatic --noinput -v 0 \
    && python -c "from greeks.engine import warm_up; warm_up()" \
    && test -n "$(ls -A "$NUMBA_CACHE_DIR")"
EXPOSE 8000 9100
CMD ["uvicorn", "signal_project.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--ws-per-message-deflate", "false"]
