"""The HTTP app of `authorgen serve` (Starlette): the page, and an OpenAI-style API.

    GET  /                 the page (page.html)
    GET  /v1/models        the runs served, with their model, tokenizer, size and val bpc
    GET  /v1/models/{id}   one of them
    POST /v1/completions   text from a run: OpenAI's completions request and response, streamed
                           as server-sent events with "stream": true
    GET  /health           what the engine is doing

Errors are OpenAI's shape, {"error": {"message", "type", "code"}}: 400 bad JSON or values,
401 a missing or wrong token (when the server has one), 403 a foreign Host or Origin, 404 an
unknown run or path, 413 a prompt over 64 KB, 415 a body not sent as JSON, 429 the server is
full (with Retry-After), 500 with a request id that the server's log has the detail of. The
values follow the rules of `authorgen generate`'s options, checked by the same `SampleConfig`.

A web page the user visits can send requests to a server on 127.0.0.1. So a loopback server
answers only requests addressed to it by its own name (`hosts`: a page whose name resolves to
127.0.0.1, DNS rebinding, sends its own), only pages of its own origin or of `origins`
(browsers send Origin with every cross-origin request; CORS for `origins` only), and takes a
completion only as `application/json`, which no page can send elsewhere without asking first.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import secrets
import sys
import time
import traceback
from importlib import resources

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.routing import Route

from authorgen.errors import AuthorgenError, Unsupported, api_name
from authorgen.serve.engine import Engine, Ticket
from authorgen.serve.errors import Busy, Stopping, Unavailable, UnknownRun
from authorgen.serve.protocol import MAX_BODY, Answer, ApiError, limits, parse_completion

DISCONNECT_POLL_S = 0.5  # how often a waiting non-streaming request checks for its caller


def error_response(error: ApiError, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def _failure(exc: Exception) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, UnknownRun):  # it went while the request waited
        return ApiError(404, str(exc), "model_not_found")
    if isinstance(exc, Stopping):
        return ApiError(503, str(exc), "server_stopping", "server_error")
    if isinstance(exc, Unsupported):  # a field the run cannot honour
        return ApiError(400, exc.worded(api_name), "invalid_value")
    if isinstance(exc, AuthorgenError) and not isinstance(exc, Unavailable):
        return ApiError(400, exc.worded(api_name), "invalid_prompt")  # it does not fit the run
    # the server's own failure: the client learns that, and an id; the log learns the rest
    # (paths and exception text say nothing to a client and something to an attacker)
    request_id = secrets.token_hex(4)
    print(f"error {request_id}: {type(exc).__name__}: {exc}", file=sys.stderr)
    if not isinstance(exc, AuthorgenError):
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, Unavailable):
        message = "the run could not be loaded: train the run again or fetch it anew"
        return ApiError(500, f"{message} (request {request_id} in the server's log)",
                        "run_unavailable", "server_error")  # fmt: skip
    message = f"the model failed on this request (request {request_id} in the server's log)"
    return ApiError(500, message, "server_error", "server_error")


class Guard:
    """Refuses (403) a request addressed to another name than the server's (`hosts`; None:
    any) or sent by a page of another origin than its own or `origins`, before any work."""

    def __init__(self, app, hosts: frozenset[str] | None, origins: frozenset[str]):
        self.app, self.hosts, self.origins = app, hosts, origins

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            headers = Headers(scope=scope)
            host = headers.get("host", "").lower()
            origin = headers.get("origin")
            error = None
            if self.hosts is not None and host not in self.hosts:
                error = ApiError(
                    403, f"this server answers to {min(self.hosts)}, not to {host or 'no name'}",
                    "forbidden_host",
                )  # fmt: skip
            elif origin is not None and origin not in self.origins | {f"http://{host}"}:
                error = ApiError(
                    403, "pages of other sites may not use this server; its user can allow one "
                    "with --allow-origin", "forbidden_origin",
                )  # fmt: skip
            if error is not None:
                await error_response(error)(scope, receive, send)
                return
        await self.app(scope, receive, send)


# --- the app ---


def _lineage(base: dict | None) -> dict | None:
    """What /v1/models says of the run a fine-tune started from: no file paths, no hashes."""
    if not isinstance(base, dict):
        return None
    said = {k: base.get(k) for k in ("name", "corpus", "val_bpc", "added_tokens")}
    pretrained = base.get("pretrained")
    if isinstance(pretrained, dict):  # a public model: its id, revision and licence
        said["pretrained"] = {k: pretrained.get(k) for k in ("id", "family", "revision", "licence")}
    return said


def _page() -> tuple[str, str]:
    """The page and its Content-Security-Policy: its one inline script allowed by hash."""
    page = resources.files("authorgen.serve").joinpath("page.html").read_text(encoding="utf-8")
    scripts = re.findall(r"<script>(.*?)</script>", page, flags=re.S)
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in scripts
    )
    policy = (
        f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    return page, policy


def create_app(
    engine: Engine,
    token: str | None = None,
    hosts: frozenset[str] | None = None,
    origins: frozenset[str] = frozenset(),
) -> Starlette:
    """The app over `engine`; with `token`, every call but the page needs
    `Authorization: Bearer TOKEN`; with `hosts`, only those Host headers are answered (a
    loopback server's names); pages of `origins` may call it (CORS) beside its own."""
    page, policy = _page()

    def authorized(request: Request) -> bool:
        if not token:
            return True
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        # as bytes: a header of any characters is a wrong token, never a failure
        return scheme.lower() == "bearer" and hmac.compare_digest(
            value.strip().encode(), token.encode()
        )

    def guarded(handler):
        async def wrapper(request: Request):
            if not authorized(request):
                error = ApiError(
                    401,
                    "this server needs a token: send the header Authorization: Bearer TOKEN",
                    "invalid_api_key",
                    "authentication_error",
                )
                return error_response(error, {"WWW-Authenticate": "Bearer"})
            try:
                return await handler(request)
            except ApiError as error:
                return error_response(error)

        return wrapper

    async def index(request: Request):
        return HTMLResponse(
            page,
            headers={
                "Content-Security-Policy": policy,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
                "Cache-Control": "no-cache",
            },
        )

    def describe(name: str, path) -> dict:
        from authorgen.checkpoint import run_summary

        try:
            row = run_summary(path)
        except AuthorgenError:
            row = {}
        created = row.get("created")
        try:
            from datetime import datetime

            stamp = int(datetime.fromisoformat(created).timestamp()) if created else 0
        except ValueError:
            stamp = 0
        return {
            "id": name,
            "object": "model",
            "created": stamp,
            "owned_by": "authorgen",
            "corpus": row.get("corpus"),
            "model": row.get("model"),
            "tokenizer": row.get("tokenizer"),
            "parameters": row.get("params"),
            "best_val_bpc": row.get("best_val_bpc"),
            # the last `authorgen eval`: can a classifier tell its samples from the author's
            # pages (AUC; 0.5: no), always beside how much they copy
            "realism": row.get("realism"),
            "longest_copy_chars": row.get("longest_copy_chars"),
            "base": _lineage(row.get("base")),
        }

    def described() -> list[dict]:
        return [describe(name, path) for name, path in sorted(engine.runs().items())]

    async def models(request: Request):  # files are read in a thread, not on the event loop
        return JSONResponse({"object": "list", "data": await asyncio.to_thread(described)})

    async def model(request: Request):
        name = request.path_params["name"]
        try:
            path = await asyncio.to_thread(engine.path, name)
        except UnknownRun as exc:
            raise ApiError(404, str(exc), "model_not_found") from None
        return JSONResponse(await asyncio.to_thread(describe, name, path))

    async def health(request: Request):
        status = engine.status()
        status["limits"].update(limits())
        return JSONResponse({"status": "ok", **status})

    async def completions(request: Request):
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY:
            raise ApiError(413, f"the request is over {MAX_BODY // 1024} KB", "too_large")
        kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if kind != "application/json":
            raise ApiError(
                415, "send the request as JSON, with the header Content-Type: application/json",
                "unsupported_media_type",
            )  # fmt: skip
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_BODY:
                raise ApiError(413, f"the request is over {MAX_BODY // 1024} KB", "too_large")
        completion = parse_completion(raw)
        from authorgen.sample import sample_seeds

        seeds = sample_seeds(completion.config)
        try:
            client = request.client.host if request.client else ""
            ticket = engine.submit(
                completion.model, completion.prompt, completion.config, seeds, client
            )
        except UnknownRun as exc:
            raise ApiError(404, str(exc), "model_not_found") from None
        except Busy as exc:
            return error_response(
                ApiError(429, str(exc), exc.code, "rate_limit_error"), {"Retry-After": "1"}
            )
        except Stopping as exc:
            raise _failure(exc) from None
        try:
            items = await _next(ticket, request)
            if items is None:
                return error_response(ApiError(499, "the client went away", "cancelled"))
            if items[0][0] == "error":
                raise _failure(items[0][1])
            answer = Answer(completion, items[0][1])
            if completion.stream:
                stream = _stream(engine, ticket, answer, items[1:])
                ticket = None  # the stream owns it now
                return StreamingResponse(
                    stream,
                    media_type="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
                )
            answer.take(items[1:])
            while not answer.finished:
                items = await _next(ticket, request)
                if items is None:
                    return error_response(ApiError(499, "the client went away", "cancelled"))
                try:
                    answer.take(items)
                except Exception as exc:
                    raise _failure(exc) from None
            ticket = None
            return JSONResponse(answer.whole())
        finally:
            if ticket is not None:
                engine.cancel(ticket)

    async def not_found(request: Request, exc: HTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(
            ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", code)
        )

    async def crashed(request: Request, exc: Exception):
        return error_response(_failure(exc))

    routes = [
        Route("/", index),
        Route("/health", guarded(health)),
        Route("/v1/models", guarded(models)),
        Route("/v1/models/{name:path}", guarded(model)),
        Route("/v1/completions", guarded(completions), methods=["POST"]),
    ]
    middleware = [Middleware(Guard, hosts=hosts, origins=origins)]
    if origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=sorted(origins),
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type"],
                max_age=600,
            )
        )
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: not_found, Exception: crashed},
        lifespan=_lifespan(engine),
    )


def _lifespan(engine: Engine):
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        engine.start()
        try:
            yield
        finally:
            await asyncio.to_thread(engine.stop)

    return lifespan


async def _next(ticket: Ticket, request: Request) -> list | None:
    """The engine's next items for `ticket`, or None once the caller has gone away (looked
    at every DISCONNECT_POLL_S, whether items come or not)."""
    while True:
        last, now = getattr(request.state, "checked", None), time.monotonic()
        if last is None:
            request.state.checked = now
        elif now - last >= DISCONNECT_POLL_S:
            request.state.checked = now
            if await request.is_disconnected():
                return None
        try:
            return await asyncio.wait_for(ticket.queue.get(), DISCONNECT_POLL_S)
        except TimeoutError:  # asyncio's since Python 3.11, the floor (pyproject.toml)
            continue


async def _stream(engine: Engine, ticket: Ticket, answer: Answer, items: list):
    """Server-sent events: a chunk per piece of text, one per finished sample, then [DONE].
    A caller that goes away cancels the stream here, and the engine drops its samples."""
    try:
        while True:
            try:
                chunks = answer.take(items)
            except Exception as exc:
                yield f"data: {json.dumps(_failure(exc).body())}\n\n"
                return
            for chunk in chunks:
                yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
            if answer.finished:
                break
            items = await ticket.queue.get()
        if answer.completion.include_usage:
            usage = {**answer.head(), "choices": [], "usage": answer.usage()}
            yield f"data: {json.dumps(usage)}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        if not answer.finished:
            engine.cancel(ticket)
