# The image docker-compose.yml runs as web, worker and beat.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends git make \
    && rm -rf /var/lib/apt/lists/* && pip install --no-cache-dir uv
WORKDIR /app
COPY pyproject.toml uv.lock ./
# Exactly what uv.lock pins (gunicorn too; --locked fails the build when pyproject.toml and the
# lock disagree), without the default groups: dev (the test tools) and devtools (moto), so
# the image has no simulated AWS and settings lists no devtools app.
RUN uv sync --locked --no-default-groups
COPY . .
ENV PATH="/app/.venv/bin:$PATH" FC_VAR_DIR=/var/lib/fatcontroller
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --no-input
