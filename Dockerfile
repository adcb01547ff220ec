# Service image for docker-compose.yml: the segstream CLI (run, topics create, generate, ...).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Package metadata and code first (README.md is the package's readme, setuptools needs it);
# config/ separately, since it is read at run time and not part of the installed package.
COPY pyproject.toml README.md ./
COPY models ./models
COPY stream ./stream
RUN pip install . && rm -rf build ./*.egg-info
COPY config ./config

# Not root: nothing here needs it.
RUN useradd --system --uid 10001 --no-create-home segstream
USER segstream

EXPOSE 9108 9109
ENTRYPOINT ["segstream"]
CMD ["--config", "config/docker.yaml", "run"]
