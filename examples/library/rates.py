"""The book-rates API the library quotes carts with: an external service (its own process, not traced by
the library's owners), 3 ms per lookup whether it answers one ISBN or many."""

from __future__ import annotations

import time

from flask import Flask, abort, jsonify, request

_LOOKUP_S = 0.003


def price_cents(isbn: str) -> int:
    return 500 + int(isbn[-6:]) % 2500


def create_app() -> Flask:
    app = Flask("rates")

    @app.get("/rates/<isbn>")
    def one(isbn: str):  # type: ignore[no-untyped-def]
        if not isbn.isdigit():
            abort(404)
        time.sleep(_LOOKUP_S)
        return jsonify(isbn=isbn, price_cents=price_cents(isbn))

    @app.get("/rates")
    def many():  # type: ignore[no-untyped-def]
        isbns = [i for i in request.args.get("isbn", "").split(",") if i.isdigit()]
        time.sleep(_LOOKUP_S)
        return jsonify(rates=[{"isbn": i, "price_cents": price_cents(i)} for i in isbns])

    @app.get("/health")
    def health():  # type: ignore[no-untyped-def]
        return jsonify(status="ok")

    return app
