"""The completions API's request and answer: OpenAI's shapes, checked by `generate`'s rules.

A request's fields are OpenAI's (`model`, `prompt`, `max_tokens`, `temperature`, `top_p`, `n`,
`stop`, `seed`, `stream`) and authorgen's: `length` and `until` (where a sample ends), and every
setting of `SampleConfig` that shapes the draw (`top_k`, `repetition_penalty`, `max_copy`,
`known_words`, `ngrams`, ...), read by its type, so a new sampler setting is a field here
without a line in this file. The values are checked by the same `SampleConfig` as the command
line's, and its errors come worded with the API's field names.
"""

from __future__ import annotations

import json
import secrets
import time
import typing
from dataclasses import dataclass, fields

from authorgen.config import REQUEST_FIELDS, SampleConfig
from authorgen.errors import UsageError, api_name

MAX_PROMPT = 64 * 1024  # bytes of UTF-8
MAX_BODY = 4 * MAX_PROMPT  # a request body larger than this is not read
MAX_N = 8
MAX_LENGTH = 100_000  # characters or tokens one sample may ask for
MAX_WORK = 200_000  # characters or tokens one request may ask for, its n samples together
MAX_STOP = 64  # characters of a stop string (each is looked for at every token)
DEFAULT_MAX_TOKENS = 16  # as OpenAI's API, when neither max_tokens nor length is given

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
# SampleConfig's settings of the draw, by name: the type each is read as
DRAW_FIELDS = {
    f.name: typing.get_type_hints(SampleConfig)[f.name]
    for f in fields(SampleConfig)
    if f.name not in REQUEST_FIELDS
}
FIELDS = {"model", "prompt", "stream", *REQUEST_FIELDS, *DRAW_FIELDS}


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.code, self.kind = status, message, code, kind

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "code": self.code}}


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


def _draw_value(body: dict, name: str, kind):
    """Setting `name` of the draw as its type in SampleConfig says (None: its default)."""
    value = body.get(name)
    if value is None:
        return None
    if bool in typing.get_args(kind) or kind is bool:
        if not isinstance(value, bool):
            raise _bad(f"{name} must be true, false or null (the default)")
        return value
    return _number(body, name, None, integer=int in typing.get_args(kind) or kind is int)


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
    if any(len(s) > MAX_STOP for s in stop):
        raise _bad(f"a stop string may have at most {MAX_STOP} characters")
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
    draw = {name: _draw_value(body, name, kind) for name, kind in DRAW_FIELDS.items()}
    options = body.get("stream_options") or {}
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    try:
        config = SampleConfig(
            length=length if length is not None else MAX_LENGTH,
            n=n,
            seed=_number(body, "seed", None, integer=True),
            stop=tuple(stop),
            until=until,
            max_tokens=max_tokens,
            **{name: value for name, value in draw.items() if value is not None},
        )
    except UsageError as exc:
        raise _bad(exc.worded(api_name)) from None
    each = min(config.limit, config.max_tokens or config.limit)
    if config.n * each > MAX_WORK:
        raise _bad(
            f"a request may ask for at most {MAX_WORK:,} characters or tokens, n x length "
            f"together (got {config.n} x {each:,}); ask for fewer or shorter samples"
        )
    return Completion(model, prompt, config, stream, include_usage)


def limits() -> dict:
    """What one request may ask for, as /health tells clients."""
    return {
        "max_n": MAX_N,
        "max_length": MAX_LENGTH,
        "max_work": MAX_WORK,
        "max_stop_chars": MAX_STOP,
        "max_prompt_bytes": MAX_PROMPT,
        "max_body_bytes": MAX_BODY,
    }


# --- the answer ---

# every other end (stop, sentence, paragraph, ...) is "stop"; "time": the server's
# --max-seconds ended it
FINISH = {"length": "length", "time": "time"}


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
        # the job may be the first of several: the samples start a fair share at a time
        self.texts = [""] * completion.config.n
        self.samples: list = [None] * completion.config.n
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
