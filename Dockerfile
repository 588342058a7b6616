# One image for every fraudstream service; the command picks the service:
#   docker run fraudstream produce --csv ...   |   train   |   score   |   alerts --follow
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    MODELS_DIR=/app/models \
    FRAUDSTREAM_HOME=/app/.fraudstream

WORKDIR /app
RUN useradd --create-home --uid 10001 fraudstream

# Dependencies first, so code changes do not reinstall TensorFlow.
COPY pyproject.toml README.md ./
COPY services/__init__.py services/__init__.py
RUN pip install --upgrade pip && pip install .

COPY services services
COPY ksql ksql
RUN pip install --no-deps . && mkdir -p /app/models /app/data /app/.fraudstream \
    && chown -R fraudstream:fraudstream /app

USER fraudstream
ENTRYPOINT ["fraudstream"]
CMD ["--help"]
