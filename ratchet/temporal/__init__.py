"""Talking to Temporal: the client, the embedded dev server, the workers."""
