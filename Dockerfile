# syntax=docker/dockerfile:1
# One image for every process of the service; the command selects it:
#   qis api | qis worker | qis scheduler | qis db migrate | qis kafka topics | qis backup
# Only the locked runtime dependencies (uv.lock, no dev group). Runs as uid 10001 and
# writes nothing outside /tmp, so it suits readOnlyRootFilesystem with an emptyDir on /tmp.
# Build: docker build -t qis:$(git rev-parse --short HEAD) .   (lint: make lint)

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
# Compile bytecode at build time (the root filesystem is read-only at run time), copy
# instead of hard-linking out of uv's cache, and use the image's Python only.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/qis
WORKDIR /src
# Dependencies first: this layer is rebuilt only when the lock changes.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
# Then the service itself, installed as a wheel (not editable: /src stays in this stage).
COPY README.md ./
COPY app ./app
COPY dashboards ./dashboards
COPY alarms ./alarms
RUN uv sync --frozen --no-dev --no-editable

FROM ${PYTHON_IMAGE} AS runtime
# pg_dump and pg_restore of PostgreSQL 15 (Debian bookworm's postgresql-client-15, the
# version of the local stack) for `qis backup` (docs/backup.md): at least the major of
# Aurora PostgreSQL 15. They land in /usr/lib/postgresql/15/bin, where the backup finds
# them (QIS_BACKUP__PG_BIN empty). Pinned: bump with Debian's point releases.
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client-15=15.18-0+deb12u1 \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 qis \
    && useradd --system --uid 10001 --gid qis --no-create-home --home-dir /tmp \
       --shell /usr/sbin/nologin qis
COPY --from=build /opt/qis /opt/qis
# Amazon RDS CA bundle: QIS_DB__SSL_ROOT_CERT for sslmode=verify-full against Aurora
# (MSK and ElastiCache certificates chain to public roots in the system trust store).
ADD --chmod=644 https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem /etc/qis/rds-global-bundle.pem
# HOME and the working directory are /tmp, the one writable path (an emptyDir in the chart).
ENV PATH=/opt/qis/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    QIS_API__HOST=0.0.0.0
WORKDIR /tmp
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["qis"]
CMD ["api"]
