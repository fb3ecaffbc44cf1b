"""The library's HTTP API (Flask, SQLAlchemy ORM sessions per request), created once per gunicorn worker.

For maintainers (Ratchet reads none of this; it must find them from measurements), the planted mistakes:
an author's books lazy-load their reviews one query per book; a member's loans are filtered on two
columns no index covers (600,000 loans); a cart quote asks the rates API once per item; the genre report
renders a costly template on every request although its answer changes once a day; the shelf-usage report
runs on a reporting engine whose pool holds one connection per worker. /health, /books/{id} and
/members/{id} are clean.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from typing import Any, TypeVar

import httpx
from flask import Flask, abort, jsonify, request
from jinja2 import Environment
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session, selectinload

from examples.library.flags import FlagFile, LibraryFlags
from examples.library.models import Author, Book, CartItem, Loan, Member
from examples.library.settings import database_url, rates_url, reporting_pool_size, sqlalchemy_url
from examples.library.telemetry import instrument

Row = TypeVar("Row")

# A report a designer made rich: a reading-time estimate for every page count of every genre, summed in
# the template (costly to render; its answer depends on nothing but the catalogue).
_GENRE_REPORT = Environment(autoescape=True).from_string(
    """<!doctype html><html><head><title>Genres</title></head><body><h1>Reading time by genre</h1><table>
{%- for row in rows %}
{%- set ns = namespace(minutes=0) %}
{%- for pages in range(1, row.max_pages * 4) %}{% set ns.minutes = ns.minutes + (pages * 1.7 + row.count) % 97 %}{% endfor %}
<tr><td>{{ row.genre }}</td><td>{{ row.count }}</td><td>{{ (ns.minutes / 60) | round(1) }} h</td></tr>
{%- endfor %}
</table></body></html>"""
)


class TimedValue:
    """One value kept for a number of seconds (the genre report's cache, per worker)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: str | None = None
        self._until = 0.0

    def get(self) -> str | None:
        with self._lock:
            return self._value if time.monotonic() < self._until else None

    def put(self, value: str, ttl_s: float) -> None:
        with self._lock:
            self._value, self._until = value, time.monotonic() + ttl_s


def get_or_404(session: Session, model: type[Row], key: int, **options: Any) -> Row:
    """The row of ``model`` with primary key ``key``, or a 404 answer."""
    found = session.get(model, key, **options)
    if found is None:
        abort(404)
    return found


def create_app() -> Flask:
    app = Flask("library")
    url = sqlalchemy_url(database_url())
    instrument(app, "library")
    engine = create_engine(url, pool_size=16, max_overflow=0)
    # Reports run on an engine of their own so they cannot starve the API of connections; its pool is sized
    # by the operators' configuration (one connection per worker as shipped).
    reporting = create_engine(url, pool_size=reporting_pool_size(), max_overflow=0, pool_timeout=30)
    rates = httpx.Client(base_url=rates_url(), timeout=10)
    flag_file = FlagFile()
    genre_cache = TimedValue()

    def flags() -> LibraryFlags:
        return flag_file.current()

    @app.get("/health")
    def health():  # type: ignore[no-untyped-def]
        return jsonify(status="ok")

    @app.get("/books/<int:book_id>")
    def book(book_id: int):  # type: ignore[no-untyped-def]
        with Session(engine) as session:
            found = get_or_404(session, Book, book_id, options=[selectinload(Book.author)])
            return jsonify(
                id=found.id,
                isbn=found.isbn,
                title=found.title,
                genre=found.genre,
                pages=found.pages,
                author=found.author.name,
            )

    @app.get("/members/<int:member_id>")
    def member(member_id: int):  # type: ignore[no-untyped-def]
        with Session(engine) as session:
            found = get_or_404(session, Member, member_id)
            return jsonify(id=found.id, name=found.name, email=found.email, joined_on=found.joined_on.isoformat())

    @app.get("/authors/<int:author_id>/books")
    def author_books(author_id: int):  # type: ignore[no-untyped-def]
        with Session(engine) as session:
            author = get_or_404(session, Author, author_id)
            query = select(Book).where(Book.author_id == author_id).order_by(Book.id)
            if flags().eager_load_reviews:
                query = query.options(selectinload(Book.reviews))
            books = session.scalars(query).all()
            return jsonify(
                author=author.name,
                books=[
                    {
                        "id": b.id,
                        "title": b.title,
                        "reviews": len(b.reviews),
                        "rating": round(sum(r.rating for r in b.reviews) / len(b.reviews), 2) if b.reviews else None,
                    }
                    for b in books
                ],
            )

    @app.get("/members/<int:member_id>/loans")
    def member_loans(member_id: int):  # type: ignore[no-untyped-def]
        status = request.args.get("status", "open")
        with Session(engine) as session:
            loans = session.scalars(
                select(Loan).where(Loan.member_id == member_id, Loan.status == status).order_by(Loan.due_on, Loan.id)
            ).all()
            return jsonify(
                member=member_id,
                status=status,
                loans=[{"id": x.id, "book": x.book_id, "due_on": x.due_on.isoformat()} for x in loans],
            )

    @app.get("/carts/<int:cart_id>/quote")
    def cart_quote(cart_id: int):  # type: ignore[no-untyped-def]
        with Session(engine) as session:
            items = session.scalars(
                select(CartItem)
                .where(CartItem.cart_id == cart_id)
                .options(selectinload(CartItem.book))
                .order_by(CartItem.id)
            ).all()
            lines = [(item.book.isbn, item.quantity) for item in items]
        if not lines:
            abort(404)
        if flags().batch_rate_lookup:
            answer = rates.get("/rates", params={"isbn": ",".join(isbn for isbn, _ in lines)}).raise_for_status()
            prices = {r["isbn"]: r["price_cents"] for r in answer.json()["rates"]}
        else:
            prices = {isbn: rates.get(f"/rates/{isbn}").raise_for_status().json()["price_cents"] for isbn, _ in lines}
        total = sum(prices[isbn] * quantity for isbn, quantity in lines)
        return jsonify(
            cart=cart_id,
            items=[{"isbn": i, "quantity": q, "price_cents": prices[i]} for i, q in lines],
            total_cents=total,
        )

    @app.get("/reports/genres")
    def genre_report():  # type: ignore[no-untyped-def]
        ttl = flags().genre_report_cache_ttl_s
        cached = genre_cache.get() if ttl > 0 else None
        if cached is None:
            with Session(engine) as session:
                rows = session.execute(
                    select(Book.genre, func.count().label("count"), func.max(Book.pages).label("max_pages"))
                    .where(Book.author_id <= 100)
                    .group_by(Book.genre)
                    .order_by(Book.genre)
                ).all()
            cached = _GENRE_REPORT.render(rows=rows)
            if ttl > 0:
                genre_cache.put(cached, ttl)
        return cached, 200, {"Content-Type": "text/html; charset=utf-8"}

    @app.get("/reports/shelf-usage")
    def shelf_usage():  # type: ignore[no-untyped-def]
        # A session on the reporting engine holds its connection from the first statement to the end.
        with Session(reporting) as session:
            today = dt.date(2025, 6, 1)
            open_loans = session.scalar(
                select(func.count()).select_from(Loan).where(Loan.id <= 2000, Loan.status == "open")
            )
            genres: list[dict[str, Any]] = [
                {"genre": g, "books": n, "pages": int(p)}
                for g, n, p in session.execute(
                    select(Book.genre, func.count(), func.sum(Book.pages))
                    .where(Book.author_id <= 800)
                    .group_by(Book.genre)
                    .order_by(Book.genre)
                ).all()
            ]
            return jsonify(as_of=today.isoformat(), open_loans_sample=open_loans, genres=genres)

    @app.get("/admin/config")
    def config():  # type: ignore[no-untyped-def]
        return jsonify(reporting_pool_size=reporting.pool.size(), worker=os.getpid())

    @app.get("/admin/flags")
    def get_flags():  # type: ignore[no-untyped-def]
        return jsonify(flags().model_dump())

    @app.post("/admin/flags")
    def set_flags():  # type: ignore[no-untyped-def]
        from pydantic import ValidationError

        try:
            return jsonify(flag_file.update(request.get_json(force=True) or {}).model_dump())
        except ValidationError as error:
            return jsonify(error=str(error)), 422

    return app
