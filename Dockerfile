# The Tiller app image: uv-managed environment from the lock file, non-root user,
# the `tiller` CLI as entrypoint (e.g. `docker run tiller run daily --json`, `... serve`).
FROM python:3.12-slim-bookworm

COPY --from=ghcr.io/astral-sh/uv:0.9 /uv /uvx /usr/local/bin/

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    TILLER_HOME=/data \
    PYTHONUNBUFFERED=1

RUN groupadd --system tiller && useradd --system --gid tiller --home-dir /app tiller \
    && mkdir -p /app /data && chown tiller:tiller /data

WORKDIR /app

# Dependencies first (cached layer), then the project itself.
COPY pyproject.toml uv.lock .python-version ./
RUN uv sync --frozen --no-dev --no-install-project --python /usr/local/bin/python3.12

COPY README.md ./
COPY tiller ./tiller
COPY flows ./flows
COPY tasks ./tasks
COPY models ./models
COPY config ./config
COPY sql ./sql
COPY reports ./reports
RUN uv sync --frozen --no-dev --python /usr/local/bin/python3.12

USER tiller
VOLUME ["/data"]
ENTRYPOINT ["tiller"]
CMD ["--help"]
