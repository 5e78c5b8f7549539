# substra-worker: one image for every service of docker-compose.yml
# (node, worker, watcher, api, flower). Configuration and secrets come from the
# environment at run time (SUBSTRA_WORKER_*); nothing secret is baked in.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY substra_worker ./substra_worker
# flower is the optional Celery monitor of the compose file's `flower` service
ARG FLOWER=1
RUN pip install . \
    && if [ "$FLOWER" = "1" ]; then pip install "flower>=2.0"; fi

# an unprivileged user; /data is the shared state folder (node stores, downloads)
RUN useradd --create-home --uid 1000 substra \
    && mkdir -p /data /watch_dirs \
    && chown substra:substra /data /watch_dirs
USER substra
WORKDIR /data
ENV SUBSTRA_WORKER_STATE_DIR=/data \
    SUBSTRA_WORKER_WATCH_ROOT=/watch_dirs

EXPOSE 8000 8010 5555
CMD ["substra-worker", "--help"]
