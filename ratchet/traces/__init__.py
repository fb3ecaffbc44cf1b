"""Traces: the OTLP receiver, span decoding and the span store."""
