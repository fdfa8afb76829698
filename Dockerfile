# electives web app: gunicorn serving one model artifact.
#
#   docker build -t electives .                                   # model mounted at run time (default target)
#   docker run -p 8000:8000 -e ELECTIVES_WEB_SECRET_KEY=$(openssl rand -hex 32) -v "$PWD/demo/model:/model:ro" electives
#
#   docker build --target baked --build-arg MODEL=demo/model -t electives:demo .   # model inside the image
#
# See docs/deploy.md for the database, the pseudonym key and the health check.
FROM python:3.11-slim AS app

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8000 \
    ELECTIVES_WEB_PRODUCTION=1 \
    ELECTIVES_MODEL=/model \
    OPENBLAS_NUM_THREADS=1

WORKDIR /app
# CPU-only torch from PyTorch's own index (no CUDA libraries), the version pyproject.toml pins.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml README.md ./
COPY src ./src
# Templates and static files are package data, so a plain install carries them.
RUN pip install . \
 && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent app

USER app
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]
# PORT and WEB_CONCURRENCY are read by `electives serve`; ELECTIVES_WEB_SECRET_KEY must be given (production).
CMD ["sh", "-c", "exec electives serve \"$ELECTIVES_MODEL\" --host 0.0.0.0"]

# The model baked into the image (read-only for the app user).
FROM app AS baked
ARG MODEL=demo/model
COPY --chown=root:root ${MODEL} /model

# Default target: no model inside; mount one at /model (or set ELECTIVES_MODEL).
FROM app AS runtime
