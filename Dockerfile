# One image for every clickstream service; the container's command picks the service
# (`clickstream api`, `processor`, `reactor`, `sink`, `dashboard`, `topics`, `loadgen`), the same
# entry points the local stack runs.
FROM python:3.11-slim

RUN useradd --create-home --uid 10001 clickstream
WORKDIR /app
# The whole project (minus what .dockerignore leaves out), so every package pyproject.toml
# lists is in the image.
COPY . .
# The same install as `make install` (pip of the project, the versions pinned in pyproject.toml),
# without the test extras and not editable.
RUN python -m pip install --no-cache-dir --upgrade pip \
    && python -m pip install --no-cache-dir . \
    && mkdir -p /data && chown clickstream /data

USER clickstream
ENV CLICKSTREAM_STATE_DIR=/data
ENTRYPOINT ["clickstream"]
