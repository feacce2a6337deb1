# The bot as a small image: one process per container, settings from the environment, /healthz as the health check.
# Many instances: see deploy/compose.yaml and the README, "Run several instances".
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
COPY services ./services
COPY locales ./locales
RUN pip install -e . \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin topup \
    && mkdir -p /data \
    && chown topup /data

# Never root: the bot needs nothing but its listener port and (with SQLite) /data.
USER topup
ENV DATABASE_URL=sqlite:////data/bot.sqlite3 \
    WEB_HOST=0.0.0.0 \
    WEB_PORT=8080
VOLUME ["/data"]
EXPOSE 8080

# /healthz answers 503 when the database or Redis is unreachable; the image has no curl, so Python asks.
HEALTHCHECK --interval=15s --timeout=5s --start-period=40s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('WEB_PORT', '8080'), timeout=4)"]

CMD ["python", "-m", "bot"]
