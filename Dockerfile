# wattpay: prepaid electricity billing on streams.
FROM python:3.11-slim-bookworm
WORKDIR /app
COPY pyproject.toml README.md ./
COPY billing billing
COPY pipelines pipelines
COPY ingest ingest
COPY sinks sinks
COPY jobs jobs
COPY wattpay wattpay
RUN pip install --no-cache-dir .
ENV WATTPAY_CLICKHOUSE_DSN=chdb:///data/clickhouse
VOLUME ["/data"]
ENTRYPOINT ["wattpay"]
CMD ["--help"]
