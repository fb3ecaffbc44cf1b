"""Create the library's tables and fill them in PostgreSQL itself (generate_series): a few seconds for
600,000 loans. Deterministic: the same rows on every run, so tests can name ids."""

from __future__ import annotations

import psycopg
from sqlalchemy import create_engine

from examples.library.models import Base
from examples.library.settings import sqlalchemy_url

AUTHORS, BOOKS_PER_AUTHOR, REVIEWS_PER_BOOK = 2_000, 20, 5
MEMBERS, LOANS, CARTS, ITEMS_PER_CART = 20_000, 600_000, 2_000, 10
GENRES = ("fiction", "history", "science", "poetry", "travel", "crime", "cooking", "art")

_FILL = f"""
INSERT INTO authors (id, name, country)
SELECT i, 'Author ' || i, (ARRAY['NO','FR','JP','BR','KE','CA'])[1 + i % 6] FROM generate_series(1, {AUTHORS}) i;
INSERT INTO books (id, author_id, isbn, title, genre, pages)
SELECT i, 1 + (i - 1) / {BOOKS_PER_AUTHOR}, '978' || lpad(i::text, 10, '0'), 'Book ' || i,
       (ARRAY{list(GENRES)!r})[1 + i % {len(GENRES)}], 80 + (i * 37) % 700
FROM generate_series(1, {AUTHORS * BOOKS_PER_AUTHOR}) i;
INSERT INTO reviews (id, book_id, rating, body)
SELECT i, 1 + (i - 1) / {REVIEWS_PER_BOOK}, 1 + (i * 7) % 5, repeat('A fair read. ', 1 + i % 8)
FROM generate_series(1, {AUTHORS * BOOKS_PER_AUTHOR * REVIEWS_PER_BOOK}) i;
INSERT INTO members (id, name, email, joined_on)
SELECT i, 'Member ' || i, 'member' || i || '@example.org', DATE '2020-01-01' + (i % 1500)
FROM generate_series(1, {MEMBERS}) i;
INSERT INTO loans (id, member_id, book_id, status, due_on)
SELECT i, (1 + (i * 7919) % {MEMBERS})::int, (1 + (i * 104729) % {AUTHORS * BOOKS_PER_AUTHOR})::int,
       CASE WHEN i % 10 = 0 THEN 'open' ELSE 'returned' END, DATE '2024-01-01' + (i % 900)::int
FROM generate_series(1::bigint, {LOANS}) i;
INSERT INTO cart_items (id, cart_id, book_id, quantity)
SELECT i, 1 + (i - 1) / {ITEMS_PER_CART}, 1 + (i * 15485863) % {AUTHORS * BOOKS_PER_AUTHOR}, 1 + i % 3
FROM generate_series(1::bigint, {CARTS * ITEMS_PER_CART}) i;
ANALYZE;
"""


def seed(database_url: str) -> None:
    """Create the tables (dropping any the library had) and fill them."""
    engine = create_engine(sqlalchemy_url(database_url))
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    engine.dispose()
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(_FILL)  # type: ignore[arg-type]  (a fixed script: no parameters)
