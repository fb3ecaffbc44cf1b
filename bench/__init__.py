"""Benchmarks: `make bench` prints Ratchet's figures beside a naive baseline, measured in one run."""
