# syntax=docker/dockerfile:1
# Image for the SER service: one image, two roles.
#   docker run ... <image>                 -> API (gunicorn on 0.0.0.0:5000), the default CMD
#   docker run ... <image> ser worker      -> Celery worker
# docker-compose.yml runs both against a Redis service.
FROM python:3.12.8-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SER_DATA_DIR=/data \
    SER_STATE_DIR=/state

# libsndfile1: soundfile's native library (WAV/FLAC/OGG decoding).
# tini: PID 1 that forwards SIGTERM to gunicorn/celery and reaps orphans, so
# `docker stop` gives a warm shutdown instead of a SIGKILL after the grace period.
# Versions are not pinned: the Debian security pocket replaces old versions, so an
# exact pin would break rebuilds after every point release; the base tag pins the suite.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libsndfile1 tini \
    && rm -rf /var/lib/apt/lists/*

# Fixed uid/gid so host-side permissions (the read-only data mount) are predictable.
RUN groupadd --system --gid 10001 ser \
    && useradd --system --uid 10001 --gid ser --create-home --home-dir /home/ser \
       --shell /usr/sbin/nologin ser \
    && mkdir -p /data /state \
    && chown ser:ser /state

WORKDIR /app

# Dependencies first (pinned in requirements.txt): this layer survives code changes.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

# Then the project itself, without re-resolving dependencies.
COPY pyproject.toml README.md ./
COPY ser ./ser
COPY api ./api
COPY worker ./worker
RUN pip install --no-cache-dir --no-deps . \
    && rm -rf build ./*.egg-info

USER 10001:10001

# numba (librosa) and matplotlib need writable cache/config dirs; site-packages is
# read-only for this user, so point them at the user's home.
ENV HOME=/home/ser \
    NUMBA_CACHE_DIR=/home/ser/.cache/numba \
    MPLCONFIGDIR=/home/ser/.config/matplotlib

EXPOSE 5000

# /health answers 200 only when Redis is reachable and a worker answers; urlopen
# raises (exit 1) on 503 and on connection errors. No curl needed in the image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4)"]

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["ser", "api", "--host", "0.0.0.0", "--port", "5000"]
