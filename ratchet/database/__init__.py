"""Inspection of a target's own database (SQLite or PostgreSQL): tables and their indexes, statement
statistics of a run, and the plans of the statements that dominate it.

The modules here are pure (no I/O): the activities read the database, the spans and pg_stat_statements, and
hand plain rows to these functions.
"""
