"""The demo shop: a real HTTP service on a real SQLite database, with planted bottlenecks."""
