# One image for web, worker, scheduler and the one-shot migration; docker-compose.yml picks the
# command. The image holds what `pip install .` gives an operator: the wheel (code, templates,
# migrations, static files and samples inside the package) and its runtime dependencies — no
# checkout, no dev tools.

FROM python:3.11-slim AS build
WORKDIR /src
# .dockerignore keeps .venv, var/, .env and .git out of the context.
COPY . .
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --system --create-home --home-dir /srv/missive --uid 10001 missive
COPY --from=build /dist/ /tmp/dist/
RUN pip install --no-cache-dir /tmp/dist/missive-*.whl && rm -rf /tmp/dist
# The working directory is the missive user's own, so the default MISSIVE_VAR_DIR (var/) is
# writable; production keeps its state in PostgreSQL and Redis.
WORKDIR /srv/missive
# WeasyPrint (the PDF edition) needs Pango and HarfBuzz's subsetter, and a font to print with.
RUN apt-get update && apt-get install -y --no-install-recommends \
      libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
USER missive
EXPOSE 8000
# The web process; docker-compose.yml gives the worker its own check and turns it off for the
# scheduler and the migration, which serve no HTTP.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["missive", "serve", "--host", "0.0.0.0", "--port", "8000"]
