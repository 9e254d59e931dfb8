# The Sluice worker (and the `sluice` CLI, and the demo service), built from this repository.
# Pinned base: Debian bookworm's Python 3.11, the version the tests run on.
FROM python:3.11.10-slim-bookworm
WORKDIR /app
COPY pyproject.toml README.md ./
COPY sluice ./sluice
COPY contracts ./contracts
COPY workflows ./workflows
COPY activities ./activities
COPY starter ./starter
COPY runtime ./runtime
COPY worker.py ./worker.py
RUN pip install --no-cache-dir . && rm -rf /app/*
# The compose stack's demo service: one standalone file, not part of the package.
COPY demo/service.py /opt/sluice-demo/service.py
USER nobody
# Connection and behaviour come from the environment: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
# SLUICE_METRICS_ADDRESS, OTEL_EXPORTER_OTLP_ENDPOINT, SLUICE_CODEC_KEY (see the README).
CMD ["sluice", "worker"]
