# One image for web, worker and scheduler; docker-compose.yml picks the command.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /srv/missive
# WeasyPrint (the PDF edition) needs Pango and HarfBuzz's subsetter, and a font to print with.
RUN apt-get update && apt-get install -y --no-install-recommends \
      libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml ./
COPY app ./app
COPY worker ./worker
COPY templates ./templates
COPY static ./static
COPY migrations ./migrations
COPY alembic.ini ./
RUN pip install --no-cache-dir -e . && useradd --system --home /srv/missive missive
USER missive
EXPOSE 8000
CMD ["missive", "serve", "--host", "0.0.0.0", "--port", "8000"]
