# The image docker-compose.yml runs as web, worker and beat.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends git make \
    && rm -rf /var/lib/apt/lists/* && pip install --no-cache-dir uv
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev && uv pip install --python .venv gunicorn
COPY . .
ENV PATH="/app/.venv/bin:$PATH" FC_VAR_DIR=/var/lib/fatcontroller
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --no-input
