"""Sampling: turn a model's logits into text, streamed, for one sample or many in one batch.

Each step of a sample, its row of logits goes through these samplers, in this order:

1. bans: ids never to print (`<unk>`, control pieces) and pieces that would break UTF-8;
2. `repetition_penalty` (CTRL's): the logits of tokens among the last `repetition_window`
   (prompt included) are divided by the penalty when positive, multiplied when negative;
3. `no_repeat_ngram`: tokens that would complete an n-gram of tokens already in the text are
   banned (lifted for a step in which it would ban everything);
4. temperature: logits / T; at 0 the likeliest token is taken and 5-7 are skipped;
5. top-k: only the k likeliest stay (ties with the k-th stay too);
6. top-p: only the fewest likeliest whose probabilities add up to p stay;
7. one draw: a uniform number from the sample's own generator against the cumulative
   probabilities (float64).

With `--max-copy` a drawn token that would make a stretch of more than N characters copied from
the corpus is banned and the draw repeated (the same chain, one more ban).

Samples are independent of the batch: sample i draws only from its own `torch.Generator`,
seeded `seed + i`, so it is the same text whether written alone or among others (up to float
rounding in a batched matrix product, which moves a draw only when it falls within about 1e-7 of
a boundary).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from authorgen.clean import normalize
from authorgen.config import SampleConfig
from authorgen.errors import DataError

BATCH = 32  # samples written together at most
MAX_TRIES = 64  # draws per step under --max-copy before the sample ends there
NEG_INF = float("-inf")


# --- the samplers: each takes and returns one row of logits (float64, shape (V,)) ---
# Each checks its own setting (ValueError), so a caller that skips SampleConfig cannot pass a
# value that would quietly do something else.


def _require(ok: bool, what: str, value) -> None:
    if not ok:
        raise ValueError(f"{what} (got {value!r})")


def penalize_repeats(logits: torch.Tensor, recent: Sequence[int], penalty: float) -> torch.Tensor:
    """Divide positive (multiply negative) logits of the `recent` tokens by `penalty`."""
    _require(
        math.isfinite(penalty) and penalty > 0, "the repetition penalty must be above 0", penalty
    )
    if penalty == 1.0 or not recent:
        return logits
    ids = torch.tensor(sorted(set(recent)), dtype=torch.long)
    chosen = logits[ids]
    logits = logits.clone()
    logits[ids] = torch.where(chosen > 0, chosen / penalty, chosen * penalty)
    return logits


class NgramMemory:
    """The n-grams of tokens seen so far, to ban the tokens that would repeat one."""

    def __init__(self, n: int, ids: Sequence[int] = ()):
        _require(isinstance(n, int) and n >= 1, "n-grams must have at least 1 token", n)
        self.n = n
        self.seen: dict[tuple[int, ...], set[int]] = {}
        self.tail: list[int] = []
        for i in ids:
            self.add(i)

    def add(self, token: int) -> None:
        if len(self.tail) == self.n - 1:
            self.seen.setdefault(tuple(self.tail), set()).add(token)
        self.tail = ([*self.tail, token])[-(self.n - 1) :] if self.n > 1 else []

    def banned(self) -> list[int]:
        """Tokens that would complete an n-gram already seen."""
        return sorted(self.seen.get(tuple(self.tail), ()))


def ban(logits: torch.Tensor, ids: Sequence[int]) -> torch.Tensor:
    if len(ids):
        logits = logits.clone()
        logits[torch.as_tensor(ids, dtype=torch.long)] = NEG_INF
    return logits


def top_k_filter(logits: torch.Tensor, k: int | None) -> torch.Tensor:
    """Keep the k largest logits (and any tied with the k-th); the rest become -inf."""
    _require(k is None or (isinstance(k, int) and k >= 1), "top-k must be at least 1", k)
    if k is None or k >= logits.numel():
        return logits
    kth = torch.topk(logits, k).values[-1]
    return logits.masked_fill(logits < kth, NEG_INF)


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the fewest likeliest tokens whose probabilities reach `p` (nucleus sampling)."""
    _require(0.0 < p <= 1.0, "top-p must be above 0 and at most 1", p)
    if p >= 1.0:
        return logits
    probs = torch.softmax(logits, dim=-1)
    order = torch.argsort(probs, descending=True, stable=True)
    before = torch.cumsum(probs[order], dim=-1) - probs[order]  # mass of the likelier tokens
    drop = order[before >= p]
    return logits.index_fill(0, drop, NEG_INF)


def distribution(logits: torch.Tensor, config: SampleConfig) -> torch.Tensor:
    """Probabilities (float64) after temperature, top-k and top-p (steps 4-6)."""
    temperature = config.temperature
    _require(math.isfinite(temperature) and temperature > 0, "sampling needs T > 0", temperature)
    logits = logits / config.temperature
    logits = top_p_filter(top_k_filter(logits, config.top_k), config.top_p)
    return torch.softmax(logits, dim=-1)


def draw(probs: torch.Tensor, generator: torch.Generator | None = None) -> int:
    """One token from `probs` by inverse transform: the first whose cumulative probability
    exceeds a uniform draw. A zero-probability token is never taken."""
    cumulative = torch.cumsum(probs, dim=-1)
    total = float(cumulative[-1])
    _require(
        math.isfinite(total) and total > 0 and bool((probs >= 0).all()), "bad probabilities", total
    )
    u = torch.rand((), generator=generator, dtype=torch.float64) * cumulative[-1]
    at = int(torch.searchsorted(cumulative, u.reshape(1), right=True))
    return min(at, probs.numel() - 1)


def sample_next(
    logits: torch.Tensor, temperature: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Next ids (B,) from logits (B, V) with temperature alone (0: greedy)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    config = SampleConfig(temperature=temperature)
    rows = [draw(distribution(row.double(), config), generator) for row in logits]
    return torch.tensor(rows, dtype=torch.long)


# --- where a sample ends ---

# A sentence ends with . ! ? or … and its closing quotes and brackets (French » after a space
# too), before a newline or before spaces and something other than », unless the word before a
# single full stop is a title or an initial.
_CLOSERS = "(?:[ \u00a0\u202f]?»|[\"'”’)\\]])*"
SENTENCE_END = re.compile(r"[.!?…]+" + _CLOSERS + r"(?=\n|\s+[^\s»])")
TRAILING_TERMINATOR = re.compile(r"[.!?…]+" + _CLOSERS + r"\s*$")  # may still become an end
_CLOSING = " \u00a0\u202f\"'”’»)]"
PARAGRAPH_END = re.compile(r"\n[ \t]*\n")
TRAILING_NEWLINE = re.compile(r"\n[ \t]*$")
ABBREVIATIONS = frozenset(
    re.findall(
        r"\w+",
        "Mr Mrs Ms Dr St Mt Jr Sr Messrs Rev Col Gen Capt Lt Sgt "
        "Prof Hon Esq vs viz M Mme Mlle MM Mgr Pr cf",
    )
)
LAST_WORD = re.compile(r"(\w+)$")


def _is_sentence_end(text: str, match: re.Match) -> bool:
    if match.group().rstrip(_CLOSING) != ".":
        return True
    word = LAST_WORD.search(text, 0, match.start())
    if word is None:
        return True
    word_text = word.group(1)
    return not (word_text in ABBREVIATIONS or (len(word_text) == 1 and word_text.isupper()))


class Ending:
    """Decides where a sample ends and which of its text is safe to print yet.

    Text comes in pieces; `feed` returns what may be printed now. Text that might still be cut
    (the start of a stop string, a full stop that may end the sentence) is held back until it is
    known. The end is the earliest of: a stop string (not printed), with `until` the first
    sentence or paragraph end at or after `length` characters, and `config.limit` characters.
    """

    def __init__(self, config: SampleConfig):
        self.config = config
        self.text = ""
        self.sent = 0  # characters of text released
        self.end: int | None = None
        self.reason = ""
        self.hold = max((len(s) - 1 for s in config.stop), default=0)

    @property
    def done(self) -> bool:
        return self.end is not None

    def feed(self, piece: str) -> str:
        self.text += piece
        self._find_end()
        return self._release()

    def close(self, reason: str) -> str:
        """End now (the model can give no more): release what is left."""
        if self.end is None:
            self.end, self.reason = min(len(self.text), self.config.limit), reason
        return self._release()

    def _find_end(self) -> None:
        cfg, text = self.config, self.text
        found = []
        for stop in cfg.stop:
            at = text.find(stop, max(0, self.sent - len(stop)))
            if at >= 0:
                found.append((at, "stop"))
        if cfg.until == "sentence" and len(text) > cfg.length:
            for m in SENTENCE_END.finditer(text, max(0, cfg.length - 16)):
                if m.end() >= cfg.length and _is_sentence_end(text, m):
                    found.append((m.end(), "sentence"))
                    break
        elif cfg.until == "paragraph" and len(text) > cfg.length:
            for m in PARAGRAPH_END.finditer(text, max(0, cfg.length - 16)):
                if m.start() >= cfg.length:
                    found.append((m.start(), "paragraph"))
                    break
        if len(text) >= cfg.limit:
            found.append((cfg.limit, "length"))
        if found:
            self.end, self.reason = min(found)

    def _release(self) -> str:
        if self.end is not None:
            safe = self.end
        else:
            safe = min(len(self.text) - self.hold, self.config.limit)
            trailing = {"sentence": TRAILING_TERMINATOR, "paragraph": TRAILING_NEWLINE}.get(
                self.config.until or ""
            )
            m = trailing.search(self.text) if trailing else None
            if m:
                safe = min(safe, m.start())
        if safe <= self.sent:
            return ""
        out, self.sent = self.text[self.sent : safe], safe
        return out


# --- generation ---


@dataclass
class Sample:
    """One finished sample: the text generated (the prompt not included) and how it came."""

    text: str
    seed: int
    tokens: int
    elapsed_s: float
    stopped: str  # length | stop | sentence | paragraph | max_copy
    originality: dict | None = None

    @property
    def chars(self) -> int:
        return len(self.text)

    def to_dict(self, config: SampleConfig, prompt: str, run: str) -> dict:
        """The JSON line `generate --json` prints: the text, how it was sampled and how it came."""
        return {
            "text": self.text,
            "prompt": prompt,
            "seed": self.seed,
            "temperature": config.temperature,
            "top_k": config.top_k,
            "top_p": config.top_p,
            "repetition_penalty": config.repetition_penalty,
            "no_repeat_ngram": config.no_repeat_ngram,
            "max_copy": config.max_copy,
            "chars": self.chars,
            "tokens": self.tokens,
            "elapsed_s": self.elapsed_s,
            "stopped": self.stopped,
            "originality": self.originality,
            "run": run,
        }


def sample_seeds(config: SampleConfig) -> list[int]:
    """One seed per sample: `config.seed`, +1, +2, ...; from a fresh random seed when unset."""
    import secrets

    first = config.seed if config.seed is not None else secrets.randbelow(2**31)
    return [first + i for i in range(config.n)]


@dataclass
class _Row:
    seed: int
    generator: torch.Generator
    decoder: object
    history: list[int]
    ending: Ending
    ngrams: NgramMemory | None = None
    guard: object = None
    tokens: int = 0
    sample: Sample | None = field(default=None)


class Generation:
    """Samples of one prompt, written `BATCH` at a time as one batch on the model.

    Iterating yields (i, text, sample) events in the order they happen: `text` is the next piece
    of sample i that is safe to print, and `sample` is the finished `Sample` (with empty text
    in that event). `index` (an `originality.Index`) adds originality reports and is required
    for `config.max_copy`.
    """

    def __init__(
        self,
        model,
        tokenizer,
        prompt: str,
        config: SampleConfig,
        seeds: Sequence[int],
        device: torch.device | str = "cpu",
        index=None,
    ):
        if config.max_copy is not None and index is None:
            raise DataError(
                "--max-copy needs the run's originality index, which this run does not have "
                "(trained with --no-index, or before runs kept one); train it again to get one"
            )
        self.prompt = normalize(prompt)  # NFC and LF, as the training text was
        self.ids = tokenizer.encode_prompt(self.prompt) if self.prompt else tokenizer.start_ids()
        if not self.ids:
            raise DataError("the prompt is empty after encoding; give some text")
        self.model, self.tokenizer, self.config = model, tokenizer, config
        self.seeds, self.device, self.index = list(seeds), torch.device(device), index

    def __iter__(self) -> Iterator[tuple[int, str, Sample | None]]:
        for first in range(0, len(self.seeds), BATCH):
            yield from self._batch(first, self.seeds[first : first + BATCH])

    def _new_row(self, seed: int) -> _Row:
        from authorgen.originality import CopyGuard

        cfg = self.config
        return _Row(
            seed=seed,
            generator=torch.Generator().manual_seed(seed),
            decoder=self.tokenizer.decoder(self.prompt),
            history=list(self.ids),
            ending=Ending(cfg),
            ngrams=NgramMemory(cfg.no_repeat_ngram, self.ids) if cfg.no_repeat_ngram else None,
            guard=CopyGuard(self.index, cfg.max_copy) if cfg.max_copy is not None else None,
        )

    @torch.no_grad()
    def _batch(self, first: int, seeds: list[int]) -> Iterator[tuple[int, str, Sample | None]]:
        start = time.monotonic()
        rows = [self._new_row(seed) for seed in seeds]
        max_tokens = 4 * self.config.limit + 16  # a byte piece is at least a quarter character
        was_training = self.model.training
        self.model.eval()
        try:
            yield from self._steps(first, rows, max_tokens, start)
        finally:
            self.model.train(was_training)  # the caller's model is left as it was given

    def _steps(self, first: int, rows: list[_Row], max_tokens: int, start: float):
        x = torch.tensor([self.ids] * len(rows), device=self.device)
        logits, state = self.model(x)
        while True:
            last = logits[:, -1, :].double().cpu()
            next_ids = []
            for i, row in enumerate(rows):
                if row.sample is not None:
                    next_ids.append(row.history[-1])
                    continue
                token, piece = self._choose(row, last[i])
                text = ""
                if token is not None:
                    row.tokens += 1
                    row.history.append(token)
                    if row.ngrams:
                        row.ngrams.add(token)
                    text = row.ending.feed(piece)
                    if not row.ending.done and row.tokens >= max_tokens:
                        text += row.ending.close("length")
                else:
                    text = row.ending.feed(row.decoder.flush()) + row.ending.close("max_copy")
                if text:
                    yield first + i, text, None
                if row.ending.done:
                    row.sample = self._finish(row, start)
                    yield first + i, "", row.sample
                next_ids.append(row.history[-1])
            if all(row.sample is not None for row in rows):
                return
            x = torch.tensor(next_ids, device=self.device).view(-1, 1)
            logits, state = self.model(x, state)

    def _choose(self, row: _Row, logits: torch.Tensor) -> tuple[int | None, str]:
        """The next token of a row and its text; None when --max-copy leaves no token."""
        cfg = self.config
        logits = ban(logits, self.tokenizer.special_ids)
        logits = ban(logits, row.decoder.banned())
        logits = penalize_repeats(
            logits, row.history[-cfg.repetition_window :], cfg.repetition_penalty
        )
        if row.ngrams:
            banned = ban(logits, row.ngrams.banned())
            if torch.isfinite(banned).any():
                logits = banned
        for _ in range(MAX_TRIES):
            if cfg.temperature == 0:
                token = int(torch.argmax(logits))
            else:
                token = draw(distribution(logits, cfg), row.generator)
            if row.guard is None:
                return token, row.decoder.push(token)
            decoder = row.decoder.clone()
            piece = decoder.push(token)
            suffix = row.guard.check(piece)
            if suffix is not None:
                row.guard.accept(suffix)
                row.decoder = decoder
                return token, piece
            logits = ban(logits, [token])
            if not torch.isfinite(logits).any():
                break
        return None, ""

    def _finish(self, row: _Row, start: float) -> Sample:
        ending = row.ending
        text = ending.text[: ending.end]
        return Sample(
            text=text,
            seed=row.seed,
            tokens=row.tokens,
            elapsed_s=round(time.monotonic() - start, 3),
            stopped=ending.reason,
            originality=self.index.report(text) if self.index is not None else None,
        )


def generate(
    model,
    tokenizer,
    prompt: str,
    config: SampleConfig,
    seed: int,
    device: torch.device | str = "cpu",
    index=None,
) -> Iterator[str]:
    """The continuation of `prompt` (one sample), piece by piece as it may be printed.

    Without a prompt the model starts as at the beginning of a paragraph (after a newline).
    Pieces are whole characters: subword bytes are held back until they complete one.

    Raises:
        DataError: when the prompt has characters a char model never saw.
    """
    generation = Generation(model, tokenizer, prompt, config, [seed], device, index)
    return (text for _, text, _ in generation if text)
