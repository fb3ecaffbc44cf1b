"""``ratchet codec-server``: the payload key for the Temporal UI, so its holders read what others see encrypted.

The UI posts a namespace's payloads to ``/decode`` (and ``/encode`` for what a person sends from it) as
``{"payloads": [{"metadata": {...}, "data": "..."}]}`` (Temporal's remote codec protocol). Only decryption is
done here: values taken from the environment stay as their ``${NAME}`` in the UI too. Listens on 127.0.0.1 and
answers the UI's origin only (CORS).
"""

from __future__ import annotations

from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.api.common.v1 import Payloads
from temporalio.converter import PayloadCodec

from ratchet.temporal.codecs import EncryptionCodec


def codec_app(codec: PayloadCodec, ui_origin: str) -> Starlette:
    async def transform(request: Request, encode: bool) -> Response:
        try:
            payloads = json_format.Parse(await request.body(), Payloads())
        except json_format.ParseError as exc:
            return JSONResponse({"error": f"not a payloads document: {exc}"}, status_code=400)
        done = await (codec.encode if encode else codec.decode)(list(payloads.payloads))
        return Response(json_format.MessageToJson(Payloads(payloads=done)), media_type="application/json")

    async def encode(request: Request) -> Response:
        return await transform(request, True)

    async def decode(request: Request) -> Response:
        return await transform(request, False)

    return Starlette(
        routes=[Route("/encode", encode, methods=["POST"]), Route("/decode", decode, methods=["POST"])],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=[ui_origin],
                allow_methods=["POST"],
                allow_headers=["content-type", "x-namespace"],
                allow_credentials=True,
            )
        ],
    )


def encryption_app(keys: dict[str, bytes], ui_origin: str) -> Starlette:
    return codec_app(EncryptionCodec(keys), ui_origin)
