# syntax=docker/dockerfile:1
# Signal Factory container image.
#   docker build -t signalfactory:local .
#   docker run --rm -p 8000:8000 signalfactory:local            # API (CMD serve)
#   docker run --rm signalfactory:local worker                   # job worker
# Secrets never enter the image: pass SIGNALFACTORY_*_FILE paths to mounted secret files at run
# time (compose secrets, Kubernetes Secret volumes). See docs/operations.md.

# Bookworm pins the Debian release, so the PostgreSQL client below is major 15 and matches the
# postgres:15 server in deploy/compose.yaml (pg_dump refuses to dump a newer server).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: build the wheel and install it, with its dependencies, into a venv -------------
FROM ${PYTHON_IMAGE} AS builder
ARG EXTRAS=postgres,redis,celery
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# The build tool lives outside the venv, so the runtime stage copies only the app and its
# dependencies.
RUN python -m pip install build \
 && python -m venv /opt/venv
# Only what the wheel needs: the .dockerignore keeps .venv, tests, data and secrets out.
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m build --wheel --outdir /wheels . \
 && /opt/venv/bin/pip install "$(ls /wheels/signalfactory-*.whl)[${EXTRAS}]" \
 && /opt/venv/bin/signalfactory --help > /dev/null

# ---- runtime: the venv, a non-root user, nothing else ------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
# postgresql-client provides pg_dump/pg_restore for `signalfactory backup` on PostgreSQL.
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 signalfactory \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/signalfactory \
            --shell /usr/sbin/nologin signalfactory \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/signalfactory
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SIGNALFACTORY_HOME=/var/lib/signalfactory \
    SIGNALFACTORY_LOG_FORMAT=json \
    NUMBA_CACHE_DIR=/tmp/numba-cache
USER 10001:10001
WORKDIR /var/lib/signalfactory
EXPOSE 8000
# Liveness only (/livez: the process answers). Readiness (/readyz) belongs to the orchestrator.
# slim has no curl; the venv's python is enough. Worker and beat containers serve no HTTP and
# disable this check (see deploy/compose.yaml).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/livez', timeout=4)"]
ENTRYPOINT ["signalfactory"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
