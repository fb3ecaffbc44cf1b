"""The storefront page (``GET /``) and its script and styles (``/static/app.js``, ``/static/app.css``).

The bundles are what a front-end build without tree-shaking or minification produces: a component per
product card variant, a rule set per theme. They are generated once per process, deterministically.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import html
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from examples.shop.datasource import Query
from examples.shop.flags import FlagStore

FEATURED = "SELECT id, name, price_cents, category FROM products ORDER BY id LIMIT 12"
_COMPONENTS = 2_000
_THEMES = 2_700
_YEAR_S = 365 * 24 * 3600


@functools.cache
def script() -> bytes:
    """The storefront's JavaScript bundle (about 0.7 MB)."""
    parts = ["/* storefront bundle */\n'use strict';\nconst registry = {};\n"]
    for n in range(_COMPONENTS):
        parts.append(
            f"registry['card{n}'] = function renderCard{n}(product, options) {{\n"
            f"  const el = document.createElement('article');\n"
            f"  el.className = 'card card-{n} ' + (options && options.compact ? 'compact' : 'full');\n"
            f"  el.innerHTML = '<h3>' + product.name + '</h3><span class=\"price\">' +"
            f" (product.price_cents / 100).toFixed(2) + '</span>';\n"
            f"  return el;\n}};\n"
        )
    parts.append("document.addEventListener('DOMContentLoaded', () => document.body.classList.add('ready'));\n")
    return "".join(parts).encode()


_BASE_STYLES = "/* storefront styles */\nbody { font-family: system-ui, sans-serif; margin: 0; }\n"
_PAGE_THEME = 1  # the theme the storefront page uses


def _theme_rules(n: int) -> str:
    hue = (n * 37) % 360
    return (
        f".theme-{n} .card {{ display: flex; flex-direction: column; padding: {4 + n % 12}px;"
        f" border: 1px solid hsl({hue}, 40%, 80%); color: hsl({hue}, 60%, 20%); }}\n"
        f".theme-{n} .price {{ font-weight: 600; color: hsl({hue}, 70%, 35%); }}\n"
    )


@functools.cache
def styles() -> bytes:
    """The storefront's style sheet (about 0.55 MB)."""
    return (_BASE_STYLES + "".join(_theme_rules(n) for n in range(_THEMES))).encode()


def critical_styles() -> str:
    """The rules the page's first paint needs (its own theme), inlined by the asset pipeline so that the rest
    of the sheet can load without blocking and without moving anything when it arrives."""
    return _BASE_STYLES + _theme_rules(_PAGE_THEME)


@functools.cache
def _gzipped(name: str) -> bytes:
    # mtime=0: the same bytes on every start, so the version in the URL and the ETag stay stable.
    return gzip.compress(ASSETS[name][0](), compresslevel=9, mtime=0)


@functools.cache
def _version(name: str) -> str:
    return hashlib.sha256(ASSETS[name][0]()).hexdigest()[:12]


ASSETS = {"app.js": (script, "text/javascript; charset=utf-8"), "app.css": (styles, "text/css; charset=utf-8")}


def _page(products: list[dict[str, Any]], pipeline: bool) -> str:
    if pipeline:
        # Styles load without blocking the first paint; the script runs after parsing. Versioned URLs may be
        # cached for a year.
        css, js = f"/static/app.css?v={_version('app.css')}", f"/static/app.js?v={_version('app.js')}"
        head = (
            f"<style>{critical_styles()}</style>"
            f'<link rel="preload" href="{css}" as="style" onload="this.onload=null;this.rel=\'stylesheet\'">'
            f'<noscript><link rel="stylesheet" href="{css}"></noscript>'
            f'<script defer src="{js}"></script>'
        )
    else:
        head = '<link rel="stylesheet" href="/static/app.css"><script src="/static/app.js"></script>'
    cards = "".join(
        f'<li class="card"><a href="/products/{p["id"]}">{html.escape(p["name"])}</a>'
        f'<span class="price">{p["price_cents"] / 100:.2f}</span></li>'
        for p in products
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Ratchet Shop</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">{head}</head>'
        f'<body class="theme-{_PAGE_THEME}"><h1>Ratchet Shop</h1><ul class="featured">{cards}</ul></body></html>'
    )


def storefront_router(query: Query, flags: FlagStore) -> APIRouter:
    """The page and its two assets."""
    router = APIRouter(tags=["storefront"])
    for name in ASSETS:  # generated at start-up, not inside the first visitor's request
        ASSETS[name][0]()

    @router.get("/", response_class=HTMLResponse)
    def home() -> HTMLResponse:
        """The storefront with its featured products."""
        products = [dict(row) for row in query(FEATURED)]
        return HTMLResponse(_page(products, flags.current.storefront_asset_pipeline))

    def asset(name: str, request: Request) -> Response:
        build, media_type = ASSETS[name]
        if not flags.current.storefront_asset_pipeline:
            return Response(build(), media_type=media_type)
        headers = {
            "Cache-Control": f"public, max-age={_YEAR_S}, immutable",
            "ETag": f'"{_version(name)}"',
            "Vary": "Accept-Encoding",
        }
        if "gzip" in request.headers.get("accept-encoding", ""):
            headers["Content-Encoding"] = "gzip"
            return Response(_gzipped(name), media_type=media_type, headers=headers)
        return Response(build(), media_type=media_type, headers=headers)

    @router.get("/static/app.js")
    def app_js(request: Request) -> Response:
        """The script bundle."""
        return asset("app.js", request)

    @router.get("/static/app.css")
    def app_css(request: Request) -> Response:
        """The style sheet."""
        return asset("app.css", request)

    return router
