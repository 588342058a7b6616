# One image for every fraudstream service; the command picks the service:
#   docker run fraudstream produce --csv ...   |   train   |   score   |   alerts --follow
# The base image is pinned to an exact Python and Debian release, and every Python package to
# the version and hashes of requirements/base.txt (`make lock`), so a build next year installs
# what was tested. docs/compose.md says which pins were pulled and run.
FROM python:3.11.14-slim-bookworm AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    MODELS_DIR=/app/models \
    FRAUDSTREAM_HOME=/app/.fraudstream \
    NUMBA_CACHE_DIR=/app/.cache/numba \
    MPLCONFIGDIR=/app/.cache/matplotlib \
    HOME=/app/.cache/home

WORKDIR /app
RUN useradd --no-create-home --home-dir /app/.cache/home --uid 10001 fraudstream

# Dependencies first, so code changes do not reinstall TensorFlow: locked versions and hashes.
COPY requirements/build.txt requirements/base.txt requirements/
RUN pip install --require-hashes --no-deps -r requirements/build.txt \
    && pip install --require-hashes --no-deps -r requirements/base.txt

COPY pyproject.toml setup.py README.md ./
COPY services services
COPY ksql ksql
# gcc only for the install: it builds the producer's C fast path (setup.py), then goes, so the
# image stays slim (without it `produce` would run its slower numpy path, same records)
# compose runs the services as the host's user (FRAUDSTREAM_UID) so that ./models stays theirs:
# the folders the services write are writable by any user; /app/.cache (numba's compiled
# kernels) is a volume, so kernels compile once, not on every start
RUN apt-get update -q && apt-get install -y -q --no-install-recommends gcc libc6-dev \
    && pip install --no-deps --no-build-isolation . \
    && apt-get purge -y -q gcc libc6-dev && apt-get autoremove -y -q \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /app/models /app/data /app/.fraudstream /app/.cache/numba \
       /app/.cache/matplotlib /app/.cache/home \
    && chown -R fraudstream:fraudstream /app \
    && chmod -R a+rwX /app/models /app/data /app/.fraudstream /app/.cache

USER fraudstream
ENTRYPOINT ["fraudstream"]
CMD ["--help"]
