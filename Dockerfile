# One image for every clickstream service; the container's command picks the service
# (`clickstream api`, `processor`, `reactor`, `sink`, `dashboard`, `topics`), the same
# entry points the local stack runs.
FROM python:3.11-slim

RUN useradd --create-home --uid 10001 clickstream
WORKDIR /app
COPY pyproject.toml README.md ./
COPY clickstream ./clickstream
COPY ingest_api ./ingest_api
COPY stream_processor ./stream_processor
COPY reactors ./reactors
COPY sink ./sink
COPY query ./query
COPY dashboard ./dashboard
# The same install as `make install`: the versions pinned in pyproject.toml.
RUN pip install --no-cache-dir . && mkdir -p /data && chown clickstream /data

USER clickstream
ENV CLICKSTREAM_STATE_DIR=/data
ENTRYPOINT ["clickstream"]
