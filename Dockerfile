# ultravox-bridge: `docker build -t ultravox-bridge .` then
# `docker run --env-file .env -p 8000:8000 ultravox-bridge` (see README, "Running in Docker and
# Kubernetes").

# --- web: the /talk page's Ultravox client SDK, from the npm registry at the locked versions ---
# Debian's Node.js and npm on the same slim base as the other stages: one base image to pull.
FROM python:3.12-slim AS web
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /web
COPY web/package.json web/package-lock.json web/install-sdk.sh ./
RUN ./install-sdk.sh /web/vendor

# --- build: install the project and its dependencies into a self-contained venv --------------
FROM python:3.12-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src
RUN python -m venv /opt/venv
# README.md is the package's long description, so the build needs it beside pyproject.toml.
COPY pyproject.toml README.md ./
COPY app ./app
COPY --from=web /web/vendor ./app/web/static/vendor
# pip and setuptools are only needed to install; leaving them out of the venv keeps the final
# image smaller and without a package installer (Python 3.12's venv has no setuptools: skipped).
RUN /opt/venv/bin/pip install --no-cache-dir . \
    && /opt/venv/bin/pip uninstall --yes pip setuptools

# --- run: the same slim base plus only the venv; no build tools, no source tree --------------
FROM python:3.12-slim

# The venv lives at the same path as in the builder, so its scripts' shebangs stay valid; it
# goes first on PATH, so `ultravox-bridge` and `python` are the venv's whatever Python version
# the base image carries.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PORT=8000

# A fixed numeric uid, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin bridge

COPY --from=builder /opt/venv /opt/venv

# Settings come from the environment (or a .env file mounted here). The only thing written is
# the call records' SQLite file (DATABASE_URL's default, unless it names PostgreSQL), in a
# volume, so the root filesystem can stay read-only.
ENV DATABASE_URL=sqlite+aiosqlite:////var/lib/ultravox-bridge/calls.db
RUN install -d -o 10001 -g 10001 -m 0750 /var/lib/ultravox-bridge
VOLUME ["/var/lib/ultravox-bridge"]
WORKDIR /srv/ultravox-bridge
USER 10001:10001
EXPOSE 8000

# slim images have no curl: ask /healthz with the venv's own Python, on the port PORT chose.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/healthz', timeout=4)"]

CMD ["ultravox-bridge", "serve"]
