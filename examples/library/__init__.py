"""A lending library: the second example service, of another stack than the demo shop.

Flask and the SQLAlchemy ORM on PostgreSQL, served by gunicorn (two worker processes with threads), with an
external book-rates API of its own. Ratchet knows nothing of it beyond ``target.yaml``; the tests check
that it finds the library's planted problems and fixes them through the library's own levers.
"""
