"""The HTTP app of `authorgen serve` (Starlette): the page, and an OpenAI-style API.

    GET  /                 the page (page.html)
    GET  /v1/models        the runs served, with their model, tokenizer, size and val bpc
    GET  /v1/models/{id}   one of them
    POST /v1/completions   text from a run: OpenAI's completions request and response, streamed
                           as server-sent events with "stream": true
    GET  /health           what the engine is doing

Errors are OpenAI's shape, {"error": {"message", "type", "code"}}: 400 bad JSON or values,
401 a missing or wrong token (when the server has one), 404 an unknown run or path, 413 a
prompt over 64 KB, 429 the server is full (with Retry-After). The values follow the rules of
`authorgen generate`'s options, checked by the same `SampleConfig`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass
from importlib import resources

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.routing import Route

from authorgen.config import SampleConfig
from authorgen.errors import AuthorgenError, UsageError
from authorgen.serve.engine import Busy, Engine, Stopping, Ticket, Unavailable, UnknownRun

MAX_PROMPT = 64 * 1024  # bytes of UTF-8
MAX_BODY = 4 * MAX_PROMPT  # a request body larger than this is not read
MAX_N = 8
MAX_LENGTH = 100_000  # characters or tokens one sample may ask for
DEFAULT_MAX_TOKENS = 16  # as OpenAI's API, when neither max_tokens nor length is given
DISCONNECT_POLL_S = 0.5  # how often a waiting non-streaming request checks for its caller

# Fields of OpenAI's request that authorgen does not implement: accepted at their neutral value.
NEUTRAL = {
    "echo": (False, None),
    "logprobs": (None, 0),
    "best_of": (None, 1),
    "suffix": (None, ""),
    "presence_penalty": (None, 0, 0.0),
    "frequency_penalty": (None, 0, 0.0),
    "logit_bias": (None, {}),
}
IGNORED = {"user", "stream_options"}  # stream_options is read below
FIELDS = {
    "model", "prompt", "max_tokens", "length", "temperature", "top_p", "n", "stop", "seed",
    "stream", "top_k", "repetition_penalty", "max_copy", "until", "known_words", "ngrams",
}  # fmt: skip


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.code, self.kind = status, message, code, kind


def error_response(error: ApiError, headers: dict | None = None) -> JSONResponse:
    body = {"error": {"message": error.message, "type": error.kind, "code": error.code}}
    return JSONResponse(body, status_code=error.status, headers=headers)


# --- the request ---


@dataclass
class Completion:
    """A completions request, checked."""

    model: str
    prompt: str
    config: SampleConfig
    stream: bool
    include_usage: bool


def _bad(message: str) -> ApiError:
    return ApiError(400, message, "invalid_value")


def _number(body: dict, name: str, default, integer: bool = False):
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, float) and integer and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        kind = "a whole number" if integer else "a number"
        raise _bad(f"{name} must be {kind} (got {json.dumps(value)})")
    return value


def parse_completion(raw: bytes) -> Completion:
    """The request in `raw` (JSON), checked by the rules of `generate`'s options.

    Raises:
        ApiError: 400 for bad JSON, fields or values; 413 for a prompt over 64 KB.
    """
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the body is not JSON ({exc})", "invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object", "invalid_json")
    for name, value in body.items():
        if name in NEUTRAL and value not in NEUTRAL[name]:
            raise _bad(f"{name} is not supported by authorgen; leave it out")
        if name not in FIELDS and name not in NEUTRAL and name not in IGNORED:
            raise _bad(f"unknown field {name!r}; see GET /v1/models and the README for the API")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model must be the name of a run (GET /v1/models lists them)")
    prompt = body.get("prompt", "")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise _bad("prompt must be a string (or a list of one string)")
    if len(prompt.encode("utf-8", errors="surrogatepass")) > MAX_PROMPT:
        raise ApiError(413, f"the prompt is over {MAX_PROMPT // 1024} KB; send less", "too_large")
    stop = body.get("stop") or ()
    stop = (stop,) if isinstance(stop, str) else stop
    if not isinstance(stop, list | tuple) or len(stop) > 4 or any(type(s) is not str for s in stop):
        raise _bad("stop must be a string or a list of at most 4 strings")
    until = body.get("until")
    if until is not None and not isinstance(until, str):
        raise _bad('until must be "sentence" or "paragraph"')
    length = _number(body, "length", None, integer=True)
    max_tokens = _number(body, "max_tokens", None, integer=True)
    if until is not None and length is None:
        raise _bad(
            "until needs length: the characters to write before the sentence or paragraph ends"
        )
    if length is None and max_tokens is None:
        max_tokens = DEFAULT_MAX_TOKENS
    for name, value in (("length", length), ("max_tokens", max_tokens)):
        if value is not None and value > MAX_LENGTH:
            raise _bad(f"{name} must be at most {MAX_LENGTH:,} (got {value})")
    n = _number(body, "n", 1, integer=True)
    if isinstance(n, int) and n > MAX_N:
        raise _bad(f"n must be at most {MAX_N} (got {n})")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _bad("stream must be true or false")
    switches = {name: body.get(name) for name in ("known_words", "ngrams")}
    for name, value in switches.items():
        if value is not None and not isinstance(value, bool):
            raise _bad(f"{name} must be true, false or null (the default)")
    options = body.get("stream_options") or {}
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    try:
        config = SampleConfig(
            temperature=_number(body, "temperature", SampleConfig.temperature),
            length=length if length is not None else MAX_LENGTH,
            n=n,
            seed=_number(body, "seed", None, integer=True),
            top_k=_number(body, "top_k", None, integer=True),
            top_p=_number(body, "top_p", SampleConfig.top_p),
            repetition_penalty=_number(body, "repetition_penalty", 1.0),
            stop=tuple(stop),
            until=until,
            max_copy=_number(body, "max_copy", None, integer=True),
            max_tokens=max_tokens,
            **switches,
        )
    except UsageError as exc:  # the CLI's words, with the API's names
        message = re.sub(r"--([a-z-]+)", lambda m: m[1].replace("-", "_"), str(exc))
        raise _bad(message) from None
    return Completion(model, prompt, config, stream, include_usage)


# --- the response ---

FINISH = {"length": "length"}  # every other end (stop, sentence, paragraph, ...) is "stop"


def _choice_end(i: int, sample) -> dict:
    return {
        "index": i,
        "finish_reason": FINISH.get(sample.stopped, "stop"),
        "stopped": sample.stopped,
        "seed": sample.seed,
        "originality": sample.originality,
    }


class Answer:
    """What is known of one completion as its events arrive."""

    def __init__(self, completion: Completion, job):
        self.id = "cmpl-" + secrets.token_hex(12)
        self.created = int(time.time())
        self.completion, self.job = completion, job
        self.texts = [""] * len(job.states)
        self.samples: list = [None] * len(job.states)
        self.finished = False

    def head(self) -> dict:
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.completion.model,
        }

    def usage(self) -> dict:
        done = sum(s.tokens for s in self.samples if s is not None)
        prompt = len(self.job.ids)
        return {"prompt_tokens": prompt, "completion_tokens": done, "total_tokens": prompt + done}

    def take(self, items: list) -> list[dict]:
        """Record `items` from the engine; the streamed chunks they make: per sample, its new
        text in one chunk, then its end."""
        texts: dict[int, str] = {}
        ends: dict[int, dict] = {}
        for item in items:
            if item[0] == "error":
                raise item[1]
            if item[0] == "end":
                self.finished = True
            elif item[0] == "text":
                _, i, text = item
                self.texts[i] += text
                texts[i] = texts.get(i, "") + text
            elif item[0] == "sample":
                _, i, sample = item
                self.samples[i] = sample
                texts.setdefault(i, "")
                ends[i] = {"text": "", "logprobs": None, **_choice_end(i, sample)}
        chunks = []
        for i, text in texts.items():
            if text:
                choice = {"index": i, "text": text, "finish_reason": None, "logprobs": None}
                chunks.append({**self.head(), "choices": [choice]})
            if i in ends:
                chunks.append({**self.head(), "choices": [ends[i]]})
        return chunks

    def whole(self) -> dict:
        choices = [
            {"text": s.text, "logprobs": None, **_choice_end(i, s)}
            for i, s in enumerate(self.samples)
        ]
        return {**self.head(), "choices": choices, "usage": self.usage()}


def _failure(exc: Exception) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, UnknownRun):  # it went while the request waited
        return ApiError(404, str(exc), "model_not_found")
    if isinstance(exc, Stopping):
        return ApiError(503, str(exc), "server_stopping", "server_error")
    if isinstance(exc, Unavailable):
        return ApiError(500, str(exc), "run_unavailable", "server_error")
    if isinstance(exc, AuthorgenError):  # the prompt does not fit the run, say
        return ApiError(400, str(exc), "invalid_prompt")
    return ApiError(
        500, f"the model failed: {type(exc).__name__}: {exc}", "server_error", "server_error"
    )


# --- the app ---


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


def create_app(engine: Engine, token: str | None = None) -> Starlette:
    """The app over `engine`; with `token`, every call but the page needs
    `Authorization: Bearer TOKEN`."""
    page, policy = _page()

    def authorized(request: Request) -> bool:
        if not token:
            return True
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip(), token)

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
        }

    async def models(request: Request):
        runs = await asyncio.to_thread(engine.runs)
        data = [describe(name, path) for name, path in sorted(runs.items())]
        return JSONResponse({"object": "list", "data": data})

    async def model(request: Request):
        name = request.path_params["name"]
        try:
            path = engine.path(name)
        except UnknownRun as exc:
            raise ApiError(404, str(exc), "model_not_found") from None
        return JSONResponse(describe(name, path))

    async def health(request: Request):
        return JSONResponse({"status": "ok", **engine.status()})

    async def completions(request: Request):
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY:
            raise ApiError(413, f"the request is over {MAX_BODY // 1024} KB", "too_large")
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_BODY:
                raise ApiError(413, f"the request is over {MAX_BODY // 1024} KB", "too_large")
        completion = parse_completion(raw)
        from authorgen.sample import sample_seeds

        seeds = sample_seeds(completion.config)
        try:
            ticket = engine.submit(completion.model, completion.prompt, completion.config, seeds)
        except UnknownRun as exc:
            raise ApiError(404, str(exc), "model_not_found") from None
        except Busy as exc:
            return error_response(
                ApiError(429, str(exc), "server_busy", "rate_limit_error"), {"Retry-After": "1"}
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
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: not_found, Exception: crashed},
        lifespan=_lifespan(engine),
    )
    return app


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
        except TimeoutError:
            continue


async def _stream(engine: Engine, ticket: Ticket, answer: Answer, items: list):
    """Server-sent events: a chunk per piece of text, one per finished sample, then [DONE].
    A caller that goes away cancels the stream here, and the engine drops its samples."""
    try:
        while True:
            try:
                chunks = answer.take(items)
            except Exception as exc:
                error = _failure(exc)
                body = {"error": {"message": error.message, "type": error.kind, "code": error.code}}
                yield f"data: {json.dumps(body)}\n\n"
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
