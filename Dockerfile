# wattpay: prepaid electricity billing on streams.
#   docker build -t wattpay .
#   docker run --rm -it -p 8124:8124 -p 9464:9464 -p 9465:9465 -p 8080:8080 \
#     -e WATTPAY_WEB_TOKEN=… -v wattpay:/data wattpay up --host 0.0.0.0
# Endpoints bind to 127.0.0.1 unless --host says otherwise; inside a container, publish them
# with --host 0.0.0.0 and -p as above (a token is then required). The embedded broker keeps
# its topics in an S3 store under /data/.wattpay/s3, so they survive a restart of the container;
# pass --brokers (and [kafka.client] settings) for a real Kafka cluster.
FROM python:3.11-slim-bookworm
# The fonts embedded in bill and invoice PDFs (Chinese and Latin glyphs).
RUN apt-get update \
    && apt-get install -y --no-install-recommends fonts-droid-fallback fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY billing billing
COPY config config
COPY bus bus
COPY store store
COPY meters meters
COPY simulate simulate
COPY notify notify
COPY pipelines pipelines
COPY jobs jobs
COPY wattpay wattpay
COPY web web
COPY native native
# The billing rules compiled to C (native/build.py), then the compiler removed again.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install --no-cache-dir . 'mypy==2.4.*' 'setuptools>=68' \
    && python native/build.py \
    && pip uninstall -y mypy \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /data
ENV WATTPAY_CLICKHOUSE_DSN=chdb:///data/clickhouse
VOLUME ["/data"]
EXPOSE 8124 9464 9465 8080
ENTRYPOINT ["wattpay"]
CMD ["--help"]
