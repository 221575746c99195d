# syntax=docker/dockerfile:1
# A streamjobs image: the worker by default, the dashboard with `streamjobs web` as entrypoint.
# Build: docker build -t streamjobs .
# The project is built into wheels in a throw-away stage, so the runtime image carries no
# compilers, caches or sources beyond the app modules and the schemas.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY streamjobs ./streamjobs
# With the web extra: the same image runs the dashboard (docker-compose.yml, k8s/base/web.yaml).
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[web]"

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    STREAMJOBS_SCHEMAS=/app/schemas \
    STREAMJOBS_METRICS_PORT=9400 \
    DEMO_STATE_DIR=/tmp
RUN groupadd --system --gid 10001 streamjobs \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin streamjobs
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
WORKDIR /app
# The catalogue and the example app; a real project copies its own app package instead.
COPY schemas ./schemas
COPY examples ./examples
USER 10001:10001
# /metrics, /healthz and /readyz (streamjobs worker --metrics-port).
EXPOSE 9400
# urllib, not curl: the slim image has no curl. Fails on 503 (stuck poll loop) or no answer.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('STREAMJOBS_METRICS_PORT', '9400'), timeout=4)"]
ENTRYPOINT ["streamjobs", "worker"]
CMD ["examples.demo_app:app"]
